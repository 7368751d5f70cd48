//! The checkpoint reader on arbitrary bytes: it must return Ok or Err, never panic or allocate
//! what the settings were not checked for, and what it accepts must be consistent: settings that
//! pass the same checks as `train`'s flags, tensors of the size the config implies, a history
//! within the run's epochs.
#![no_main]
use imdb_lstm::train::checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = checkpoint::load_bytes(data) {
        let s = &c.spec.plan;
        let early = s.early_stopping.as_ref();
        imdb_lstm::validate::run(s).unwrap();
        let n = s.model.param_count();
        assert_eq!(c.state.params.layout.len(), n);
        for values in [&c.state.params.data, &c.state.adam.m, &c.state.adam.v] {
            assert_eq!(values.len(), n);
            assert!(values.iter().all(|v| v.is_finite()));
        }
        assert!(c.state.adam.v.iter().all(|&v| v >= 0.0));
        assert!(c.state.epochs_done() <= s.train.epochs);
        assert_eq!(c.early.as_ref().map(|e| &e.cfg), early);
        if let Some(best) = c.early.as_ref().and_then(|e| e.best_params.as_ref()) {
            assert_eq!(best.len(), n);
        }
    }
});
