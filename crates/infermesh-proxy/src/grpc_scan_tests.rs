//! Tests of the request-stream guard: crafted messages split at every byte, repeated
//! `model_spec`s, malformed top-level fields, large skipped fields in many chunks.

use infermesh_tfserving::Code;
use infermesh_tfserving::proto::tensorflow::serving::ModelSpec;
use prost::Message;

use super::*;

/// A field 1 record holding a `ModelSpec` named `name`.
fn spec_record(name: &str) -> Vec<u8> {
    let spec = ModelSpec {
        name: name.into(),
        signature_name: "serving_default".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut out = vec![0x0A];
    prost::encoding::encode_varint(spec.len() as u64, &mut out);
    out.extend_from_slice(&spec);
    out
}

/// A length-delimited record of `field` with `len` payload bytes.
fn len_record(field: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(field << 3 | 2, &mut out);
    prost::encoding::encode_varint(len as u64, &mut out);
    out.extend((0..len).map(|i| (i % 251) as u8));
    out
}

/// A message with every wire type the guard skips: field 1 first, a tensor-like
/// field 2 of `tensor` bytes, a varint, a fixed32, a fixed64 and a string.
fn message(tensor: usize) -> Vec<u8> {
    let mut m = spec_record("allowed");
    m.extend(len_record(2, tensor));
    m.extend([0x28, 0xff, 0xff, 0xff, 0xff, 0x0f]); // field 5, varint
    m.extend([0x35, 1, 2, 3, 4]); // field 6, fixed32
    m.extend([0x39, 1, 2, 3, 4, 5, 6, 7, 8]); // field 7, fixed64
    m.extend([0x1A, 1, b'y']); // field 3, "y"
    m.extend([0x80, 0x01, 0]); // field 16, varint 0 (two-byte tag)
    m
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Feeds `stream` in chunks of the given sizes (the last one takes the rest):
/// the guard after it all, or the first error.
fn feed_chunks(stream: &[u8], sizes: impl Iterator<Item = usize>) -> Result<StreamGuard, Status> {
    let mut guard = StreamGuard::new(Field1::ModelSpec);
    let mut pos = 0;
    for size in sizes {
        if pos >= stream.len() {
            break;
        }
        let end = (pos + size.max(1)).min(stream.len());
        guard.feed(&stream[pos..end])?;
        pos = end;
    }
    guard.feed(&stream[pos..])?;
    Ok(guard)
}

#[test]
fn a_well_formed_message_passes_split_at_every_byte() {
    let stream = framed(&message(300));
    for split in 0..=stream.len() {
        let mut guard = StreamGuard::new(Field1::ModelSpec);
        guard.feed(&stream[..split]).unwrap();
        assert_eq!(guard.is_done(), split == stream.len(), "split {split}");
        guard.feed(&stream[split..]).unwrap();
        guard.finish().unwrap();
    }
    let guard = feed_chunks(&stream, std::iter::repeat(1)).unwrap();
    guard.finish().unwrap();
    // An empty message is a message.
    let mut guard = StreamGuard::new(Field1::ModelSpec);
    guard.feed(&[0, 0, 0, 0, 0]).unwrap();
    guard.finish().unwrap();
}

#[test]
fn a_second_model_spec_is_refused_before_its_chunk_is_passed() {
    let mut m = message(300);
    let duplicate_at = FRAME_HEADER + m.len();
    m.extend(spec_record("secret"));
    let stream = framed(&m);
    for split in 0..=stream.len() {
        let mut guard = StreamGuard::new(Field1::ModelSpec);
        let first = guard.feed(&stream[..split]);
        if split > duplicate_at {
            // The chunk holding the duplicate's tag is refused itself.
            assert_eq!(first.unwrap_err(), duplicate(), "split {split}");
            continue;
        }
        first.unwrap();
        assert_eq!(guard.feed(&stream[split..]).unwrap_err(), duplicate());
        assert!(!guard.is_done());
    }
    // Byte by byte: refused exactly at the duplicate's tag byte.
    let mut guard = StreamGuard::new(Field1::ModelSpec);
    for (i, b) in stream.iter().enumerate() {
        match guard.feed(&[*b]) {
            Ok(()) => assert!(i < duplicate_at),
            Err(e) => {
                assert_eq!(
                    (i, e.message.as_str()),
                    (duplicate_at, DUPLICATE_MODEL_SPEC)
                );
                break;
            }
        }
    }
}

#[test]
fn field_1_anywhere_and_in_any_encoding_counts() {
    // Not first: after a tensor, then again at the end.
    let mut m = len_record(2, 10);
    m.extend(spec_record("allowed"));
    m.extend(len_record(3, 2));
    m.extend(spec_record("secret"));
    let e = feed_chunks(&framed(&m), std::iter::repeat(3)).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert_eq!(e.message, DUPLICATE_MODEL_SPEC);
    // An overlong tag (0x8A 0x00 is field 1, wire type 2) is still field 1.
    let mut m = spec_record("allowed");
    m.extend([0x8A, 0x00, 0x02, 0x0A, 0x00]);
    assert_eq!(
        feed_chunks(&framed(&m), std::iter::repeat(1)).unwrap_err(),
        duplicate()
    );
    // Field 1 with another wire type is refused, not ignored.
    let mut m = spec_record("allowed");
    m.extend([0x08, 0x01]);
    assert_eq!(
        feed_chunks(&framed(&m), std::iter::once(100))
            .unwrap_err()
            .code,
        Code::InvalidArgument
    );
}

#[test]
fn malformed_top_level_fields_are_refused() {
    let cases: &[(&str, &[u8])] = &[
        ("group start", &[0x13, 0x00]),
        ("group end", &[0x14]),
        ("wire type 6", &[0x16, 0x00]),
        ("wire type 7", &[0x17, 0x00]),
        ("field number 0", &[0x02, 0x00]),
        ("tag over 5 bytes", &[0x82, 0x80, 0x80, 0x80, 0x80, 0x01]),
        ("tag over 32 bits", &[0x82, 0x80, 0x80, 0x80, 0x70]),
        (
            "varint over 10 bytes",
            &[
                0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ),
        (
            "length over 5 bytes",
            &[0x12, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00],
        ),
        ("length overruns", &[0x12, 0x05, 0x00]),
        ("fixed64 overruns", &[0x11, 1, 2, 3]),
        ("fixed32 overruns", &[0x15, 1, 2]),
        ("ends inside a tag", &[0x0A, 0x00, 0x80]),
        ("ends inside a varint", &[0x10, 0x80]),
        ("ends inside a length", &[0x12, 0x80]),
    ];
    for (what, m) in cases {
        let stream = framed(m);
        for size in 1..=stream.len() {
            let e = feed_chunks(&stream, std::iter::repeat(size)).expect_err(what);
            assert_eq!(e.code, Code::InvalidArgument, "{what}");
            assert!(
                e.message.starts_with("Malformed gRPC request"),
                "{what}: {e}"
            );
        }
    }
    // A frame longer than the stream: refused when the stream ends.
    let mut stream = framed(&message(10));
    stream[4] += 1;
    let guard = feed_chunks(&stream, std::iter::repeat(7)).unwrap();
    assert!(guard.finish().is_err());
    // Compressed frames cannot be checked.
    let mut stream = framed(&message(10));
    stream[0] = 1;
    let e = feed_chunks(&stream, std::iter::once(1)).unwrap_err();
    assert_eq!(e.code, Code::Unimplemented);
}

#[test]
fn a_second_message_on_a_unary_call_is_refused() {
    for kind in [Field1::ModelSpec, Field1::Tasks] {
        let mut stream = framed(&message(20));
        let one = stream.len();
        stream.extend(framed(&message(20)));
        let mut guard = StreamGuard::new(kind);
        guard.feed(&stream[..one]).unwrap();
        assert!(guard.is_done());
        let e = guard.feed(&stream[one..one + 1]).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        // Even an empty second frame.
        let mut guard = StreamGuard::new(kind);
        guard.feed(&stream[..one]).unwrap();
        assert!(guard.feed(&[0, 0, 0, 0, 0]).is_err());
    }
}

#[test]
fn multi_inference_tasks_may_repeat_field_1() {
    let mut m = spec_record("a");
    m.extend(spec_record("a"));
    m.extend(len_record(2, 40));
    let mut guard = StreamGuard::new(Field1::Tasks);
    guard.feed(&framed(&m)).unwrap();
    guard.finish().unwrap();
    // Within one task (or spec holder), field 1 is once.
    assert!(FieldScan::check(&m, true).is_err());
    assert!(FieldScan::check(&m, false).is_ok());
}

#[test]
fn a_large_skipped_field_is_followed_across_many_chunks() {
    let tensor = 1 << 20;
    let clean = framed(&message(tensor));
    let mut smuggled = message(tensor);
    smuggled.extend(spec_record("secret"));
    let smuggled = framed(&smuggled);
    for chunk in [1, 7, 1000, 16 << 10, 65_535] {
        feed_chunks(&clean, std::iter::repeat(chunk))
            .unwrap()
            .finish()
            .unwrap();
        let e = feed_chunks(&smuggled, std::iter::repeat(chunk)).unwrap_err();
        assert_eq!(e, duplicate(), "chunk {chunk}");
    }
    // Uneven chunk sizes.
    let sizes = (0..).map(|i: usize| (i * 7919) % 5003 + 1);
    feed_chunks(&clean, sizes.clone())
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(feed_chunks(&smuggled, sizes).unwrap_err(), duplicate());
    // The tensor claims one byte more than the frame holds: refused at its length.
    let mut m = spec_record("allowed");
    m.extend(len_record(2, tensor));
    let mut stream = framed(&m);
    let at = FRAME_HEADER + spec_record("allowed").len() + 1;
    let declared = u32::from_be_bytes([stream[1], stream[2], stream[3], stream[4]]);
    stream[1..5].copy_from_slice(&(declared - 1).to_be_bytes());
    let mut guard = StreamGuard::new(Field1::ModelSpec);
    guard.feed(&stream[..at]).unwrap();
    assert!(guard.feed(&stream[at..at + 3]).is_err());
}
