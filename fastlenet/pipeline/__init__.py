"""The file pipeline: sources -> decoded pixels -> preprocessing in C -> the engine -> results.

    for p in fastlenet.predict_files(["scans/", "shard-0001.tar"], net=net):
        print(p.source, p.member, p.index, p.label, p.confidence, p.error)

Work is cut into tasks of inputs (tasks.py); a pool of worker processes (or threads) reads,
decodes and preprocesses whole tasks, with a bounded window of tasks in flight (pool.py); worker
processes also run a one-thread copy of the engine on their task and send back probabilities,
not pixels. Results are put in input order in the main thread (run.py), which runs the engine
itself on what it read (IDX, .npy) or when the caller asks for the model inputs. A bad input
becomes a Prediction with `error` set (rows.py) and never stops the stream.
"""
from fastlenet.io.decode import quiet_pillow
from fastlenet.pipeline.pool import POOLS
from fastlenet.pipeline.rows import Prediction
from fastlenet.pipeline.run import predict_batches, predict_files
from fastlenet.pipeline.tasks import DEFAULT_BATCH, PREPROCESS_CHOICES

__all__ = ["Prediction", "predict_files", "predict_batches", "quiet_pillow", "POOLS",
           "DEFAULT_BATCH", "PREPROCESS_CHOICES"]
