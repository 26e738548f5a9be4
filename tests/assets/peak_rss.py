"""The CLI in a fresh process that prints its peak resident memory: ``python -c CHILD audit ...``; the last
line of stderr is ``MAXRSS_KB <kilobytes>`` (``resource.getrusage(RUSAGE_SELF).ru_maxrss``)."""

CHILD = """
import resource, sys
sys.argv = ["deepaudit", *sys.argv[1:]]
import cli
try:
    cli.main()
finally:
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def peak_mb(stderr: str) -> float:
    """The child's peak RSS in MB, from its stderr."""
    return int(stderr.rsplit("MAXRSS_KB", 1)[1].split()[0]) / 1024
