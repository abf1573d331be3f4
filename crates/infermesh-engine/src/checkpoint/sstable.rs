//! A reader for the LevelDB table ("SSTable") format that TensorFlow uses for a
//! checkpoint's `variables.index`: footer, index block, data blocks with prefix
//! compressed keys, optional Snappy compression, masked CRC32C per block.

/// Last bytes of every table: two block handles, padding, then the magic number.
const FOOTER_LEN: usize = 48;
const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Each block is followed by one compression-type byte and a masked CRC32C.
const TRAILER_LEN: usize = 5;
const NO_COMPRESSION: u8 = 0;
const SNAPPY: u8 = 1;

/// Key/value pairs of a table, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a table could not be read. The message names what is wrong, not where in
/// the code it was found.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TableError(String);

fn corrupt(message: impl Into<String>) -> TableError {
    TableError(message.into())
}

/// LevelDB's CRC mask, applied to checksums stored next to the data they cover.
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Reads a varint64 at `*pos`, advancing it.
fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, TableError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or_else(|| corrupt("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(corrupt("varint longer than 10 bytes"))
}

fn fixed32(buf: &[u8], at: usize) -> Result<u32, TableError> {
    let bytes = buf
        .get(at..at + 4)
        .ok_or_else(|| corrupt("truncated fixed32"))?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Where a block lives in the file.
#[derive(Clone, Copy, Debug)]
struct BlockHandle {
    offset: usize,
    size: usize,
}

impl BlockHandle {
    fn decode(buf: &[u8], pos: &mut usize) -> Result<BlockHandle, TableError> {
        let offset = varint(buf, pos)?;
        let size = varint(buf, pos)?;
        let offset = usize::try_from(offset).map_err(|_| corrupt("block offset too large"))?;
        let size = usize::try_from(size).map_err(|_| corrupt("block size too large"))?;
        Ok(BlockHandle { offset, size })
    }
}

/// Reads one block: checks its CRC, then decompresses it if needed.
fn read_block(file: &[u8], handle: BlockHandle) -> Result<Vec<u8>, TableError> {
    let end = handle
        .offset
        .checked_add(handle.size)
        .and_then(|e| e.checked_add(TRAILER_LEN))
        .filter(|&e| e <= file.len())
        .ok_or_else(|| {
            corrupt(format!(
                "block at offset {} (size {}) runs past the end of the file",
                handle.offset, handle.size
            ))
        })?;
    let data_end = handle.offset + handle.size;
    let with_type = &file[handle.offset..data_end + 1];
    let stored = fixed32(file, data_end + 1)?;
    let actual = mask_crc(crc32c::crc32c(with_type));
    if stored != actual {
        return Err(corrupt(format!(
            "checksum mismatch in block at offset {} (stored {stored:#010x}, computed {actual:#010x})",
            handle.offset
        )));
    }
    debug_assert_eq!(end, data_end + TRAILER_LEN);
    let contents = &file[handle.offset..data_end];
    match file[data_end] {
        NO_COMPRESSION => Ok(contents.to_vec()),
        SNAPPY => snap::raw::Decoder::new()
            .decompress_vec(contents)
            .map_err(|e| corrupt(format!("bad Snappy block at offset {}: {e}", handle.offset))),
        other => Err(corrupt(format!(
            "unknown block compression type {other} at offset {}",
            handle.offset
        ))),
    }
}

/// Decodes every key/value pair of a block, undoing the key prefix compression.
fn block_entries(block: &[u8]) -> Result<Entries, TableError> {
    if block.len() < 4 {
        return Err(corrupt("block shorter than its restart count"));
    }
    let restarts = fixed32(block, block.len() - 4)? as usize;
    let restarts_len = restarts
        .checked_add(1)
        .and_then(|n| n.checked_mul(4))
        .filter(|&n| n <= block.len())
        .ok_or_else(|| corrupt("block restart array larger than the block"))?;
    let data = &block[..block.len() - restarts_len];
    let mut entries = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let shared = varint(data, &mut pos)? as usize;
        let unshared = varint(data, &mut pos)? as usize;
        let value_len = varint(data, &mut pos)? as usize;
        if shared > key.len() {
            return Err(corrupt("key shares more bytes than the previous key has"));
        }
        let key_end = pos
            .checked_add(unshared)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| corrupt("truncated key"))?;
        key.truncate(shared);
        key.extend_from_slice(&data[pos..key_end]);
        let value_end = key_end
            .checked_add(value_len)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| corrupt("truncated value"))?;
        entries.push((key.clone(), data[key_end..value_end].to_vec()));
        pos = value_end;
    }
    Ok(entries)
}

/// Reads a whole table (index and data blocks) into its key/value pairs, in key order.
pub fn read_table(file: &[u8]) -> Result<Entries, TableError> {
    if file.len() < FOOTER_LEN {
        return Err(corrupt(format!(
            "file is {} bytes, shorter than a table footer",
            file.len()
        )));
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    let magic = u64::from(fixed32(footer, 40)?) | (u64::from(fixed32(footer, 44)?) << 32);
    if magic != MAGIC {
        return Err(corrupt(format!(
            "bad table magic number {magic:#018x} (not a TensorFlow checkpoint index)"
        )));
    }
    let mut pos = 0;
    let _metaindex = BlockHandle::decode(footer, &mut pos)?;
    let index = BlockHandle::decode(footer, &mut pos)?;
    let mut entries = Vec::new();
    for (_, handle_bytes) in block_entries(&read_block(file, index)?)? {
        let handle = BlockHandle::decode(&handle_bytes, &mut 0)?;
        entries.extend(block_entries(&read_block(file, handle)?)?);
    }
    Ok(entries)
}
