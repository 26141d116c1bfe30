"""A human summary of an index run (rich tables on the terminal)."""

from __future__ import annotations

from avfleet.index.job import IndexReport


def print_index_report(report: IndexReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]index {report.date}[/] run {report.run_id}: {report.num_files} files -> "
        f"{report.num_indexed} indexed + {report.num_quarantined} quarantined, {report.num_frames} frames, "
        f"read {report.bytes_read:,} of {report.bytes_stored:,} bytes ({100 * report.read_fraction:.2f}%), "
        f"peak worker RSS {report.peak_worker_rss_bytes / 2**20:.0f} MiB, {report.duration_s:.1f} s"
    )
    domains = Table(title="frames per domain (time of day / weather / road)")
    domains.add_column("domain")
    domains.add_column("frames", justify="right")
    domains.add_column("share", justify="right")
    for domain, n in sorted(report.frames_per_domain.items(), key=lambda kv: -kv[1]):
        domains.add_row(domain, str(n), f"{100 * n / max(report.num_frames, 1):.1f}%")
    console.print(domains)
    if report.quarantined:
        bad = Table(title="quarantined recordings")
        bad.add_column("recording")
        bad.add_column("offset", justify="right")
        bad.add_column("reason")
        for q in report.quarantined:
            bad.add_row(q["recording_uri"].rsplit("/", 1)[-1], str(q["error_offset"]), q["reason"])
        console.print(bad)
