"""A recording cut off by a crash keeps its good lines (issue 9, case 7).

Before, the unfinished tail of a file whose writer was killed counted as a bad line; in a small
archive file that one line broke the 1 % bad-line limit, so the whole file was set aside, on
every run, since the file stays in the archive. The tail is now reported and dropped; a bad line
in the body still counts.
"""

from __future__ import annotations

import json

from data_contracts.gate import check_and_admit
from tasks.io.archive import ArchiveWriter
from tasks.io.recordings import BadLine, read_ticks
from tasks.stages.backfill import BackfillStats, load_ticks

HOUR = 1_764_997_200.0  # 2025-12-06 05:00 UTC, the hour of the envelopes' times


def _killed_archive_file(tmp_path, envelopes, n: int = 40):
    """An archive file as a capture killed mid-run leaves it: flushed lines, no gzip end."""
    archive = ArchiveWriter(tmp_path / "archive", flush_every_s=0.0)
    for envelope in envelopes(n, seed=3)[:n]:
        archive.write(json.dumps(envelope), "BTC-USD", "run-1", HOUR)
    (path,) = archive.stats.files
    copy = tmp_path / "killed" / path.name
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())  # the file as the crash left it
    archive.close()
    return copy


def test_a_killed_capture_s_archive_file_is_admitted_with_its_tail_reported(tmp_path, envelopes):
    path = _killed_archive_file(tmp_path, envelopes)
    (tail,) = [b for b in read_ticks([path]) if isinstance(b, BadLine)]
    assert tail.truncated and "cut off" in tail.error
    admission = check_and_admit([path], tmp_path / "quarantine")
    assert admission.admitted == [path] and not admission.quarantined
    report = admission.reports[str(path)]
    assert any("cut off" in note for note in report.notes)
    stats = BackfillStats()
    load_ticks([path], stats)
    assert stats.bad_lines == 1  # still counted where ticks are counted


def test_a_last_line_cut_mid_way_is_a_truncated_tail(tmp_path, envelopes):
    lines = [json.dumps(e) for e in envelopes(40, seed=4)]
    path = tmp_path / "cut.ndjson"
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:57])  # no newline: cut mid-line
    admission = check_and_admit([path], tmp_path / "quarantine")
    assert admission.admitted == [path]


def test_a_bad_line_in_the_body_still_counts(tmp_path, envelopes):
    lines = [json.dumps(e) for e in envelopes(40, seed=5)]
    lines.insert(20, lines[21][:57])  # cut, but followed by more lines: not a tail
    path = tmp_path / "broken.ndjson"
    path.write_text("\n".join(lines) + "\n")
    admission = check_and_admit([path], tmp_path / "quarantine")
    assert admission.admitted == [] and len(admission.quarantined) == 1
