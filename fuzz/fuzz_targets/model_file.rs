//! The model-file reader on arbitrary bytes: it must return Ok or Err, never panic, and what it
//! accepts must survive a save/load round trip unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = imdb_lstm::model_file::load_bytes(data) {
        // Accepted: the shapes must match the layers, so predict cannot index out of bounds.
        let want = m.arch.tensors().expect("an accepted file has valid layers");
        assert_eq!(m.tensors.len(), want.len());
        for ((name, shape, values), t) in m.tensors.iter().zip(want) {
            assert_eq!(*name, t.name);
            assert_eq!(*shape, t.shape);
            assert_eq!(values.len(), shape.iter().product::<usize>());
        }
    }
});
