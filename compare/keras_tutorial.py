# Same-machine reference for BENCHMARKS.md (not part of the build or the tests).
# Run: python -m venv v && v/bin/pip install tensorflow-cpu && v/bin/python compare/keras_tutorial.py
# The tutorial itself in Keras 3 / TensorFlow (CPU): Embedding(5000,128) ->
# LSTM(128, dropout=0.2, recurrent_dropout=0.2) -> Dense(1, sigmoid), Adam, batch 32, 2 epochs,
# validation on 25,000 each epoch. Random token ids: the time does not depend on the text.
import os, time, resource
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, tensorflow as tf, keras
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(2)
rng = np.random.default_rng(0)
N, T, V = 25000, 80, 5000
xtr = rng.integers(0, V, (N, T)); ytr = rng.integers(0, 2, N)
xte = rng.integers(0, V, (N, T)); yte = rng.integers(0, 2, N)
m = keras.Sequential([keras.Input((T,)), keras.layers.Embedding(V, 128),
    keras.layers.LSTM(128, dropout=0.2, recurrent_dropout=0.2),
    keras.layers.Dense(1, activation="sigmoid")])
m.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
class Timer(keras.callbacks.Callback):
    def on_epoch_begin(s, e, logs=None): s.t = time.time()
    def on_test_begin(s, logs=None): s.v = time.time(); print(f"  train {s.v - s.t:.1f} s", flush=True)
    def on_test_end(s, logs=None): print(f"  validation {time.time() - s.v:.1f} s", flush=True)
t0 = time.time()
m.fit(xtr, ytr, batch_size=32, epochs=2, validation_data=(xte, yte), verbose=0, callbacks=[Timer()])
print(f"total {time.time() - t0:.1f} s for 2 epochs; keras {keras.__version__}, tf {tf.__version__}")
t0 = time.time(); m.predict(xte, batch_size=1024, verbose=0); dt = time.time() - t0
print(f"inference batch 1024 from ids: {N / dt:.0f} reviews/s")
print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MiB")
