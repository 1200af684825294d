"""Files that run code when they are unpickled, for the tests that rlpf never opens them that way.

Unpickling a ``Payload`` calls ``open(marker, "w")``, which creates the marker file: a test asserts
that the marker does not exist after rlpf was handed the file. Real pickles, made the way an
attacker would make them (``pickle`` / ``torch.save`` / ``cloudpickle`` inside an SB3 zip).
"""
from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def pickle_file(path, marker) -> str:
    """A plain pickle (what SB3's VecNormalize.save writes) that creates ``marker`` when loaded."""
    with open(path, "wb") as f:
        pickle.dump(Payload(marker), f)
    return str(path)


def torch_file(path, marker, around=None) -> str:
    """A ``torch.save`` file; ``around(payload)`` builds the saved object (default: the payload alone)."""
    import torch

    p = Payload(marker)
    torch.save(around(p) if around else p, path)
    return str(path)


def sb3_zip_with_payload(src, dst, marker, key: str) -> str:
    """A copy of the SB3 zip ``src`` whose ``data`` entry ``key`` is a cloudpickled payload (a new entry
    when ``key`` is not there; an existing one keeps its readable fields, as a doctored file would)."""
    import cloudpickle

    with zipfile.ZipFile(src) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    data = json.loads(entries["data"].decode())
    entry = dict(data[key]) if isinstance(data.get(key), dict) else {":type:": "<class 'payloads.Payload'>"}
    entry[":serialized:"] = base64.b64encode(cloudpickle.dumps(Payload(marker))).decode()
    data[key] = entry
    entries["data"] = json.dumps(data).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in entries.items():
            z.writestr(name, content)
    with open(dst, "wb") as f:
        f.write(buf.getvalue())
    return str(dst)
