"""The --scheduler/--output job of `fastlenet predict` and `fastlenet read`: a Dask cluster
(an address, or "local"), the job's DataFrame written to Parquet or CSV by the workers'
partitions, unreadable inputs reported on stderr as in-process."""
from __future__ import annotations

import sys
from typing import Optional

from fastlenet.cli.common import UserError
from fastlenet.names import row_name, safe_name

OUTPUT_KINDS = (".parquet", ".csv")


def _connect(scheduler: Optional[str]):
    """(client or None, cluster or None) for --scheduler: None (Dask's local threads, no
    cluster), "local" (a LocalCluster: one single-threaded worker process per CPU), or the
    address of a running scheduler."""
    if scheduler is None:
        return None, None
    from distributed import Client, LocalCluster

    from fastlenet._engine import DEFAULT_THREADS

    if scheduler == "local":
        # Loopback only; the dashboard on a free port, not 8787, which another cluster may hold.
        cluster = LocalCluster(n_workers=DEFAULT_THREADS, threads_per_worker=1,
                               processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0")
        print(f"fastlenet: LocalCluster of {DEFAULT_THREADS} worker process(es); "
              f"dashboard {cluster.dashboard_link}", file=sys.stderr)
        return Client(cluster), cluster
    return Client(scheduler, timeout="30s"), None


def require_dask():
    try:
        from fastlenet import dask as fldask

        fldask._require_dask()
    except ImportError as e:
        raise UserError(str(e)) from None


def dask_job(args, method: str, net, options: dict, noun: str) -> int:
    """A job of fastlenet.dask.`method` (predict_files or read_fields) for --scheduler
    ADDRESS|local --output FILE: writes .parquet (a directory of part files, plain Dask) or
    .csv (one file), reports unreadable inputs on stderr one line each, named as in-process,
    and returns the exit status."""
    require_dask()
    from fastlenet import dask as fldask

    output = getattr(args, "output", None)
    if not output:
        raise UserError("--scheduler needs --output FILE.parquet or FILE.csv (the results are "
                        "written by the workers' partitions, not printed)")
    kind = next((k for k in OUTPUT_KINDS if output.lower().endswith(k)), None)
    if kind is None:
        raise UserError(f"--output {output}: expected a name ending in .parquet or .csv")
    options = dict(options, files_per_partition=getattr(args, "files_per_partition", None)
                   or fldask.FILES_PER_PARTITION)
    try:
        client, cluster = _connect(args.scheduler)
    except (OSError, TimeoutError, ValueError) as e:
        raise UserError(f"--scheduler {args.scheduler}: cannot connect ({e})") from None
    try:
        return _run_job(args.paths, getattr(fldask, method)(args.paths, net, **options),
                        output, kind, options, noun)
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _run_job(paths, df, output, kind, options, noun) -> int:
    import dask
    import pandas as pd

    print(f"fastlenet: {df.npartitions} task(s) of up to {options['files_per_partition']} "
          f"file(s) each", file=sys.stderr, flush=True)
    failed = df[df["error"].notnull()][["source", "member", "index", "error"]]
    count = df["source"].count()
    if kind == ".parquet":
        write = df.to_parquet(output, write_index=False, compute=False)
    else:
        # to_csv gives a Delayed: bring the rest to Delayed too, so the three share one graph.
        write = df.to_csv(output, single_file=True, index=False, compute=False)
        failed, count = failed.to_delayed(), count.to_delayed()
    try:
        # One compute, so each partition is read once for the file, the errors and the count.
        _, failed, total = dask.compute(write, failed, count)
    except OSError as e:
        raise UserError(f"--output {output}: {e.strerror or e}") from None
    if isinstance(failed, (list, tuple)):
        failed = pd.concat(failed) if failed else df._meta[["source", "member", "index",
                                                             "error"]]
    for row in failed.itertuples(index=False):
        where = row_name(row.source, None if _isna(row.member) else row.member,
                         None if _isna(row.index) else int(row.index))
        print(f"fastlenet: {safe_name(where)}: {row.error}", file=sys.stderr)
    total = int(total)
    if total == 0:
        print(f"fastlenet: no inputs found in {', '.join(map(str, paths))}", file=sys.stderr)
        return 1
    print(f"fastlenet: wrote {total - len(failed)} {noun} to {output}"
          + (f"; {len(failed)} input(s) failed" if len(failed) else ""), file=sys.stderr)
    return 1 if len(failed) else 0


def _isna(v) -> bool:
    import pandas as pd

    return v is None or v is pd.NA
