"""The CLI in a fresh process that prints its peak resident memory: ``python -c CHILD audit ...``; the last
line of stderr is ``MAXRSS_KB <kilobytes>``.

The peak is the process's own high-water mark (``VmHWM`` in ``/proc/self/status``), not
``resource.getrusage(RUSAGE_SELF).ru_maxrss``: on Linux a child started by ``subprocess`` inherits its parent's
``ru_maxrss`` across fork/vfork and exec, so a child of a test process that once held 2 GiB reports at least
2 GiB whatever it does itself (a bound or a comparison on it then passes by construction). ``VmHWM`` belongs to
the address space exec created. Where there is no ``/proc`` (macOS), ``ru_maxrss`` is the fallback."""

PEAK = """
def peak_rss_kb():
    try:
        with open("/proc/self/status") as fh:
            return int(next(line for line in fh if line.startswith("VmHWM:")).split()[1])
    except (OSError, StopIteration):
        import resource, sys
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb // 1024 if sys.platform == "darwin" else kb  # bytes on macOS
"""

CHILD = PEAK + """
import sys
sys.argv = ["deepaudit", *sys.argv[1:]]
import cli
try:
    cli.main()
finally:
    print("MAXRSS_KB", peak_rss_kb(), file=sys.stderr)
"""


def peak_mb(stderr: str) -> float:
    """The child's peak RSS in MB, from its stderr."""
    return int(stderr.rsplit("MAXRSS_KB", 1)[1].split()[0]) / 1024
