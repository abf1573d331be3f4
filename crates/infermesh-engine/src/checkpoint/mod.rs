//! TensorFlow V2 checkpoints ("TensorBundle"): `variables.index`, a table of
//! `BundleEntryProto`s keyed by variable name, and `variables.data-NNNNN-of-MMMMM`
//! shards holding the raw little-endian tensor bytes. Used to freeze a SavedModel's
//! variables into constants.

mod sstable;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use prost::Message;
use tract_core::internal::{DatumType, Tensor, tract_ndarray};
use tract_tensorflow::tfpb::tensorflow::{TensorShapeProto, VersionDef};

pub use sstable::mask_crc;

/// `tensorflow.BundleHeaderProto`: the value stored under the empty key.
#[derive(Clone, PartialEq, Message)]
pub struct BundleHeaderProto {
    #[prost(int32, tag = "1")]
    pub num_shards: i32,
    /// 0 = little endian, 1 = big endian.
    #[prost(int32, tag = "2")]
    pub endianness: i32,
    #[prost(message, optional, tag = "3")]
    pub version: Option<VersionDef>,
}

/// `tensorflow.BundleEntryProto`: where one tensor lives and how to check it.
#[derive(Clone, PartialEq, Message)]
pub struct BundleEntryProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    #[prost(int32, tag = "3")]
    pub shard_id: i32,
    #[prost(int64, tag = "4")]
    pub offset: i64,
    #[prost(int64, tag = "5")]
    pub size: i64,
    /// Masked CRC32C of the tensor bytes.
    #[prost(fixed32, tag = "6")]
    pub crc32c: u32,
    /// `TensorSliceProto`s of a partitioned variable; kept opaque (unsupported).
    #[prost(bytes = "vec", repeated, tag = "7")]
    pub slices: Vec<Vec<u8>>,
}

/// A checkpoint that cannot be read, with the file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {path}: {reason}")]
pub struct CheckpointError {
    pub path: PathBuf,
    pub reason: String,
}

/// An opened checkpoint: its index in memory, its data shards read on demand.
#[derive(Debug)]
pub struct Checkpoint {
    /// Path prefix of the files, e.g. `.../variables/variables`.
    prefix: PathBuf,
    num_shards: i32,
    entries: HashMap<String, BundleEntryProto>,
}

impl Checkpoint {
    /// Opens the checkpoint whose files start with `prefix` (`<dir>/variables/variables`).
    pub fn open(prefix: &Path) -> Result<Checkpoint, CheckpointError> {
        let index_path = with_suffix(prefix, ".index");
        let fail = |reason: String| CheckpointError {
            path: index_path.clone(),
            reason,
        };
        let bytes = std::fs::read(&index_path).map_err(|e| fail(e.to_string()))?;
        let table = sstable::read_table(&bytes).map_err(|e| fail(e.to_string()))?;
        let mut header = None;
        let mut entries = HashMap::new();
        for (key, value) in table {
            if key.is_empty() {
                let h = BundleHeaderProto::decode(&*value)
                    .map_err(|e| fail(format!("bad bundle header: {e}")))?;
                header = Some(h);
                continue;
            }
            let name = String::from_utf8(key)
                .map_err(|_| fail("a tensor name is not valid UTF-8".into()))?;
            let entry = BundleEntryProto::decode(&*value)
                .map_err(|e| fail(format!("bad entry for tensor {name}: {e}")))?;
            entries.insert(name, entry);
        }
        let header = header.ok_or_else(|| fail("missing bundle header".into()))?;
        if header.endianness != 0 {
            return Err(fail("big-endian checkpoints are not supported".into()));
        }
        if header.num_shards < 1 {
            return Err(fail(format!("invalid shard count {}", header.num_shards)));
        }
        Ok(Checkpoint {
            prefix: prefix.to_path_buf(),
            num_shards: header.num_shards,
            entries,
        })
    }

    /// Whether the checkpoint holds a tensor of that name.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Number of tensors in the checkpoint.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Reads one tensor, checking its size and checksum.
    pub fn read(&self, name: &str) -> Result<Tensor, CheckpointError> {
        let entry = self.entries.get(name).ok_or_else(|| CheckpointError {
            path: with_suffix(&self.prefix, ".index"),
            reason: format!("no tensor named {name:?}"),
        })?;
        let data_path = with_suffix(
            &self.prefix,
            &format!(".data-{:05}-of-{:05}", entry.shard_id, self.num_shards),
        );
        let fail = |reason: String| CheckpointError {
            path: data_path.clone(),
            reason: format!("tensor {name:?}: {reason}"),
        };
        if !entry.slices.is_empty() {
            return Err(fail(
                "partitioned (sliced) variables are not supported".into(),
            ));
        }
        if entry.shard_id < 0 || entry.shard_id >= self.num_shards {
            return Err(fail(format!("shard {} out of range", entry.shard_id)));
        }
        let (datum, width) = datum_type(entry.dtype)
            .ok_or_else(|| fail(format!("unsupported checkpoint dtype {}", entry.dtype)))?;
        let shape = shape_of(entry.shape.as_ref()).map_err(fail)?;
        let count: usize = shape.iter().product();
        let size = usize::try_from(entry.size).map_err(|_| fail("negative size".into()))?;
        if count.checked_mul(width) != Some(size) {
            return Err(fail(format!(
                "{size} bytes stored for shape {shape:?} of {width}-byte elements"
            )));
        }
        let offset = u64::try_from(entry.offset).map_err(|_| fail("negative offset".into()))?;
        let mut bytes = vec![0u8; size];
        let mut file = File::open(&data_path).map_err(|e| fail(e.to_string()))?;
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| fail(format!("reading {size} bytes at offset {offset}: {e}")))?;
        let actual = mask_crc(crc32c::crc32c(&bytes));
        if actual != entry.crc32c {
            return Err(fail(format!(
                "checksum mismatch (stored {:#010x}, computed {actual:#010x})",
                entry.crc32c
            )));
        }
        tensor_from_le_bytes(datum, &shape, &bytes).map_err(fail)
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn shape_of(shape: Option<&TensorShapeProto>) -> Result<Vec<usize>, String> {
    let Some(shape) = shape else {
        return Ok(vec![]);
    };
    if shape.unknown_rank {
        return Err("stored with an unknown rank".into());
    }
    shape
        .dim
        .iter()
        .map(|d| usize::try_from(d.size).map_err(|_| format!("invalid dimension {}", d.size)))
        .collect()
}

/// tract's type and element width in bytes for a `tensorflow.DataType` number.
fn datum_type(dtype: i32) -> Option<(DatumType, usize)> {
    Some(match dtype {
        1 => (DatumType::F32, 4),
        2 => (DatumType::F64, 8),
        3 => (DatumType::I32, 4),
        4 => (DatumType::U8, 1),
        5 => (DatumType::I16, 2),
        6 => (DatumType::I8, 1),
        9 => (DatumType::I64, 8),
        10 => (DatumType::Bool, 1),
        17 => (DatumType::U16, 2),
        22 => (DatumType::U32, 4),
        23 => (DatumType::U64, 8),
        _ => return None,
    })
}

fn build<T: tract_core::internal::Datum, const N: usize>(
    shape: &[usize],
    bytes: &[u8],
    decode: impl Fn([u8; N]) -> T,
) -> Result<Tensor, String> {
    let values: Vec<T> = bytes
        .chunks_exact(N)
        .map(|c| decode(c.try_into().expect("chunks_exact yields N bytes")))
        .collect();
    tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(shape), values)
        .map(Tensor::from)
        .map_err(|e| e.to_string())
}

/// Builds a tensor from raw little-endian element bytes.
pub fn tensor_from_le_bytes(
    datum: DatumType,
    shape: &[usize],
    bytes: &[u8],
) -> Result<Tensor, String> {
    match datum {
        DatumType::F32 => build(shape, bytes, f32::from_le_bytes),
        DatumType::F64 => build(shape, bytes, f64::from_le_bytes),
        DatumType::I8 => build(shape, bytes, i8::from_le_bytes),
        DatumType::I16 => build(shape, bytes, i16::from_le_bytes),
        DatumType::I32 => build(shape, bytes, i32::from_le_bytes),
        DatumType::I64 => build(shape, bytes, i64::from_le_bytes),
        DatumType::U8 => build(shape, bytes, u8::from_le_bytes),
        DatumType::U16 => build(shape, bytes, u16::from_le_bytes),
        DatumType::U32 => build(shape, bytes, u32::from_le_bytes),
        DatumType::U64 => build(shape, bytes, u64::from_le_bytes),
        DatumType::Bool => build(shape, bytes, |[b]: [u8; 1]| b != 0),
        other => Err(format!("unsupported element type {other:?}")),
    }
}
