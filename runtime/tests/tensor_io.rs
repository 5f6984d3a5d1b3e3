//! npy / npz / `TensorProto` reading and writing.
// Test code: panicking helpers and exact float comparisons are intended.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_cmp,
    clippy::cast_precision_loss,
    clippy::unnecessary_wraps
)]

use laurel_runtime::tract_onnx::pb;
use laurel_runtime::tract_onnx::prelude::tract_ndarray::{Array, ArrayD, ShapeBuilder};
use laurel_runtime::tract_onnx::prelude::{DatumType, f16};
use laurel_runtime::{
    RuntimeError, Tensor, read_npy, read_npz, read_tensor_pb, write_npy, write_npz,
};
use ndarray_npy::{NpzReader, NpzWriter, ReadNpyExt, WriteNpyExt};
use prost::Message;

fn t<T: laurel_runtime::tract_onnx::prelude::Datum + Copy>(shape: &[usize], data: &[T]) -> Tensor {
    Tensor::from_shape(shape, data).unwrap()
}

#[test]
fn npy_roundtrip_f32_i64_and_more() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<Tensor> = vec![
        t(
            &[2, 3],
            &[1.5f32, -2.0, 0.0, f32::MAX, f32::MIN_POSITIVE, -0.25],
        ),
        t(&[3, 1, 2], &[i64::MIN, -1, 0, 1, 42, i64::MAX]),
        t(&[4], &[true, false, false, true]),
        t(&[2], &[f16::from_f32(1.5), f16::from_f32(-0.125)]),
        t(&[2, 2], &[1.0f64, 2.5, -3.25, 1e300]),
        t(&[3], &[-128i8, 0, 127]),
        t(&[2], &[0u8, 255]),
        t(&[2], &[u64::MAX, 7]),
        t(&[2], &[i32::MIN, i32::MAX]),
        t(&[2], &[u16::MAX, 1]),
        t(&[0, 3], &[] as &[f32]),
        t(&[], &[7i64]),
    ];
    for (ix, tensor) in cases.iter().enumerate() {
        let path = dir.path().join(format!("t{ix}.npy"));
        write_npy(&path, tensor).unwrap();
        let back = read_npy(&path).unwrap();
        assert_eq!(back.datum_type(), tensor.datum_type(), "case {ix}");
        assert_eq!(back.shape(), tensor.shape(), "case {ix}");
        assert_eq!(&back, tensor, "case {ix}");
    }
}

#[test]
fn npy_compatible_with_ndarray_npy() {
    let dir = tempfile::tempdir().unwrap();
    // ours -> ndarray-npy
    let path = dir.path().join("ours.npy");
    write_npy(&path, &t(&[2, 2], &[1.0f32, 2.0, 3.0, 4.0])).unwrap();
    let arr = ArrayD::<f32>::read_npy(std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(arr.shape(), &[2, 2]);
    assert_eq!(
        arr.iter().copied().collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0, 4.0]
    );
    let path = dir.path().join("ours_i64.npy");
    write_npy(&path, &t(&[3], &[5i64, -6, 7])).unwrap();
    let arr = ArrayD::<i64>::read_npy(std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(arr.iter().copied().collect::<Vec<_>>(), vec![5, -6, 7]);
    // ndarray-npy -> ours, C order and Fortran order
    let c = Array::from_shape_vec((2, 3), vec![0i32, 1, 2, 3, 4, 5]).unwrap();
    let path = dir.path().join("c.npy");
    c.write_npy(std::fs::File::create(&path).unwrap()).unwrap();
    assert_eq!(read_npy(&path).unwrap(), t(&[2, 3], &[0i32, 1, 2, 3, 4, 5]));
    let f = Array::from_shape_vec((2, 3).f(), vec![0.0f64, 3.0, 1.0, 4.0, 2.0, 5.0]).unwrap();
    assert_eq!(f[[0, 1]], 1.0);
    let path = dir.path().join("f.npy");
    f.write_npy(std::fs::File::create(&path).unwrap()).unwrap();
    let back = read_npy(&path).unwrap();
    assert_eq!(back, t(&[2, 3], &[0.0f64, 1.0, 2.0, 3.0, 4.0, 5.0]));
}

#[test]
fn npy_big_endian_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Hand-made big-endian int32 file.
    let dict = "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }";
    let mut header = dict.to_owned();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&1i32.to_be_bytes());
    bytes.extend_from_slice(&(-2i32).to_be_bytes());
    let path = dir.path().join("be.npy");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read_npy(&path).unwrap(), t(&[2], &[1i32, -2]));
    // Truncated data.
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let err = read_npy(&path).unwrap_err();
    assert!(matches!(err, RuntimeError::Npy { .. }), "{err}");
    // Not npy at all.
    std::fs::write(&path, b"hello").unwrap();
    assert!(matches!(
        read_npy(&path).unwrap_err(),
        RuntimeError::Npy { .. }
    ));
    // Missing file.
    assert!(matches!(
        read_npy(&dir.path().join("nope.npy")).unwrap_err(),
        RuntimeError::Io { .. }
    ));
}

#[test]
fn npz_written_by_ndarray_npy() {
    let dir = tempfile::tempdir().unwrap();
    for compressed in [false, true] {
        let path = dir.path().join(format!("a{compressed}.npz"));
        let file = std::fs::File::create(&path).unwrap();
        let mut npz = if compressed {
            NpzWriter::new_compressed(file)
        } else {
            NpzWriter::new(file)
        };
        npz.add_array(
            "input_ids",
            &Array::from_shape_vec((1, 3), vec![101i64, 2023, 102]).unwrap(),
        )
        .unwrap();
        npz.add_array(
            "logits",
            &Array::from_shape_vec((2,), vec![0.5f32, -1.5]).unwrap(),
        )
        .unwrap();
        npz.add_array(
            "flags",
            &Array::from_shape_vec((2,), vec![true, false]).unwrap(),
        )
        .unwrap();
        npz.finish().unwrap();
        let got = read_npz(&path).unwrap();
        let names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["input_ids", "logits", "flags"]);
        assert_eq!(got[0].1, t(&[1, 3], &[101i64, 2023, 102]));
        assert_eq!(got[1].1, t(&[2], &[0.5f32, -1.5]));
        assert_eq!(got[2].1, t(&[2], &[true, false]));
    }
}

#[test]
fn npz_roundtrip_and_numpy_compat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npz");
    let tensors = vec![
        ("y".to_owned(), t(&[2, 2], &[1.0f32, 2.0, 3.0, 4.0])),
        ("ids".to_owned(), t(&[3], &[1i64, 2, 3])),
    ];
    write_npz(&path, &tensors).unwrap();
    assert_eq!(read_npz(&path).unwrap(), tensors);
    let mut reader = NpzReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let y: ArrayD<f32> = reader.by_name("y.npy").unwrap();
    assert_eq!(y.shape(), &[2, 2]);
    assert_eq!(
        y.iter().copied().collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0, 4.0]
    );
}

#[test]
fn npz_garbage_is_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.npz");
    std::fs::write(&path, b"not a zip").unwrap();
    assert!(matches!(
        read_npz(&path).unwrap_err(),
        RuntimeError::Npy { .. }
    ));
}

#[test]
fn tensor_pb_typed_fields() {
    let proto = pb::TensorProto {
        name: "input_0".into(),
        dims: vec![2, 2],
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: vec![1.0, -2.0, 3.5, 0.0],
        ..Default::default()
    };
    let (name, tensor) = read_tensor_pb(&proto.encode_to_vec()).unwrap();
    assert_eq!(name, "input_0");
    assert_eq!(tensor, t(&[2, 2], &[1.0f32, -2.0, 3.5, 0.0]));
}

#[test]
fn tensor_pb_raw_data_unnamed() {
    let mut raw = Vec::new();
    for v in [3i64, -4, 5] {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    let proto = pb::TensorProto {
        dims: vec![3],
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        raw_data: raw,
        ..Default::default()
    };
    let (name, tensor) = read_tensor_pb(&proto.encode_to_vec()).unwrap();
    assert_eq!(name, "");
    assert_eq!(tensor.datum_type(), DatumType::I64);
    assert_eq!(tensor, t(&[3], &[3i64, -4, 5]));
    // raw data too short for the dims
    let short = pb::TensorProto {
        dims: vec![4],
        ..proto
    };
    assert!(matches!(
        read_tensor_pb(&short.encode_to_vec()).unwrap_err(),
        RuntimeError::TensorProto { .. }
    ));
}

#[test]
fn tensor_pb_bad_inputs_do_not_panic() {
    assert!(matches!(
        read_tensor_pb(b"\xff\xff\xff\xff").unwrap_err(),
        RuntimeError::TensorProto { .. }
    ));
    let string_raw = pb::TensorProto {
        dims: vec![1],
        data_type: pb::tensor_proto::DataType::String as i32,
        raw_data: b"abc".to_vec(),
        ..Default::default()
    };
    assert!(read_tensor_pb(&string_raw.encode_to_vec()).is_err());
    let bad_type = pb::TensorProto {
        dims: vec![1],
        data_type: 9999,
        ..Default::default()
    };
    assert!(read_tensor_pb(&bad_type.encode_to_vec()).is_err());
    let negative = pb::TensorProto {
        dims: vec![-1],
        data_type: pb::tensor_proto::DataType::Float as i32,
        ..Default::default()
    };
    assert!(read_tensor_pb(&negative.encode_to_vec()).is_err());
}
