//! The model-file reader on arbitrary bytes: it must return Ok or Err, never panic, and what it
//! accepts must survive a save/load round trip unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = imdb_lstm::model_file::load_bytes(data) {
        // Accepted: the shapes must match the config, so predict cannot index out of bounds.
        for ((name, shape, values), (want_name, want_shape)) in
            m.tensors.iter().zip(m.config.tensor_shapes())
        {
            assert_eq!(name, want_name);
            assert_eq!(shape, &want_shape);
            assert_eq!(values.len(), shape.iter().product::<usize>());
        }
    }
});
