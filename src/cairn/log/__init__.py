"""The event log: group-committed appends (`writer`) and cursor-based consumers (`consumer`).

The log is the `events` table of the storage backend: an ordered sequence (`seq`, monotonic per
database, with gaps where duplicates were dropped). Writers append through `LogWriter`; readers call
`Consumer.poll()` and `Consumer.commit()` and never see an event twice after a commit.
"""

from cairn.log.consumer import Consumer
from cairn.log.writer import LogWriter, WriterStats

__all__ = ["Consumer", "LogWriter", "WriterStats"]
