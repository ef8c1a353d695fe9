"""Tar helpers the tests share (a plain module, like shared_dir)."""
import io
import tarfile


def tar_of(files):
    """An uncompressed tar of {name: bytes}, regular files only."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()
