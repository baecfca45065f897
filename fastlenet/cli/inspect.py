"""fastlenet inspect (how a weights file maps to LeNet-5) and fastlenet config."""
from __future__ import annotations

import json

from fastlenet import weights
from fastlenet.cli.common import UserError

def cmd_inspect(args) -> int:
    try:
        conv = weights.inspect(args.weights, layout=args.layout, strict=args.strict)
        meta = weights.check_meta(conv.meta, f"{args.weights}: metadata")
    except (OSError, ValueError, ImportError, KeyError) as e:
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise UserError(msg if args.weights in msg else f"{args.weights}: {msg}") from None
    except Exception as e:  # the file is untrusted: whatever else it provokes is one line too
        raise UserError(f"{args.weights}: cannot be read as LeNet-5 weights "
                        f"({type(e).__name__}: {e})") from None
    count = sum(int(v.size) for v in conv.weights.values())
    print(f"{args.weights}")
    print(conv.describe())
    print(f"parameters: {count:,}")
    chans = "1 channel (grayscale)" if conv.in_channels == 1 else f"{conv.in_channels} channels (RGB)"
    print(f"input: {chans}, {meta.get('input_size') or 32}x{meta.get('input_size') or 32}")
    print(f"classes: {conv.num_classes}")
    if conv.meta:
        print("metadata:")
        for key, value in conv.meta.items():
            print(f"  {key}: {json.dumps(value)}")
    else:
        defaults = ", ".join(f"{k}={meta[k]}" for k in ("activation", "pool", "mean", "std"))
        print(f"metadata: none (defaults: {defaults})")
    return 0


def cmd_config(args) -> int:
    from fastlenet.config import show_config

    show_config()
    return 0
