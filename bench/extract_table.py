"""The results of bench/extract.py as a Markdown table (the one docs/benchmarks.md quotes)."""

from __future__ import annotations

import statistics

RAW_FLOAT32 = 7 * 7 * 768 * 4  # bytes of one image's mixed7 features as float32


def table(results: dict) -> str:
    ab, stage, rss = results["ab"], results["stage"], results["rss"]
    full, plus5, same = stage["full"], stage["plus5"], stage["unchanged"]
    a = statistics.median(ab["bare_img_s"])
    b = statistics.median(ab["stream_img_s"])
    d = full["size_vs_raw_float32"]
    n = results["images"]
    lines = [
        "| measure | result | target |",
        "| --- | --- | --- |",
        f"| (a) bare backbone, pre-decoded tensors, bs {results['batch_size']} | "
        f"{a:.1f} img/s (runs: {_list(ab['bare_img_s'])}) | |",
        f"| (b) JPEG files on disk -> Parquet on disk, streaming | "
        f"{b:.1f} img/s (runs: {_list(ab['stream_img_s'])}) | |",
        f"| (b') whole stage, {n} images (model load, fingerprint, cache check included) | "
        f"{n / full['wall_s']:.1f} img/s ({full['wall_s']:.1f} s) | |",
        f"| (c) b/a, median of alternating pairs, wall clock | {ab['ratio_median']:.3f} "
        f"(pairs: {_list(ab['ratio_per_pair'], 3)}) | >= 0.9 |",
        f"| (c') b/a per CPU second (images per process CPU second; robust to other users) | "
        f"{ab['cpu_ratio_median']:.3f} (pairs: {_list(ab['cpu_ratio_per_pair'], 3)}; a = "
        f"{statistics.median(ab['bare_img_per_cpu_s']):.1f}, b = "
        f"{statistics.median(ab['stream_img_per_cpu_s']):.1f} img per CPU s) | |",
        f"| (d) bytes on disk per image, float16+zstd | {full['bytes_per_image']:.0f} B = "
        f"{d:.3f} x raw float32 ({RAW_FLOAT32} B) | <= 0.35 |",
        f"| (e) re-run after adding {stage['new_images']} images (5%) | computed "
        f"{plus5['computed']}, reused {plus5['reused']}; {plus5['wall_s']:.1f} s = "
        f"{plus5['wall_s'] / full['wall_s']:.2f} x the full run ({full['wall_s']:.1f} s) | "
        f"computes exactly {stage['new_images']} |",
        f"| (e') re-run with nothing new | computed {same['computed']}; {same['wall_s']:.1f} s "
        f"= {same['wall_s'] / full['wall_s']:.2f} x the full run | computes 0 |",
    ]
    for entry in rss:
        lines.append(
            f"| (f) peak RSS, whole stage, {entry['images']} images (fresh process) | "
            f"{entry['peak_rss_mib']:.0f} MiB | flat in dataset size |"
        )
    if results.get("formats"):
        lines += [
            "",
            "Part formats (the same 256 rows of float16 features, zstd; CPU ms per row):",
            "",
            "| format | size vs raw float32 | write ms/row | read ms/row |",
            "| --- | --- | --- | --- |",
        ]
        for entry in results["formats"]:
            lines.append(
                f"| {entry['format']} | {entry['size_vs_raw']:.3f} | "
                f"{entry['write_ms_per_row']:.3f} | {entry['read_ms_per_row']:.3f} |"
            )
    if results.get("levers"):
        lines += [
            "",
            f"Levers ({results['lever_images']} images each; 'vs baseline' is b against a "
            "baseline b measured right after it):",
            "",
            "| lever | a img/s | b img/s | b/a wall | b/a CPU | b vs baseline wall "
            "| b vs baseline CPU | size vs raw |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for lever in results["levers"]:
            lines.append(
                f"| {lever['lever']} | {lever['bare_img_s']:.1f} | {lever['stream_img_s']:.1f} | "
                f"{lever['b_over_a']:.3f} | {lever['b_over_a_cpu']:.3f} | "
                f"{lever['vs_baseline_stream']:.3f} | {lever['vs_baseline_stream_cpu']:.3f} | "
                f"{lever['size_vs_raw']:.3f} |"
            )
    return "\n".join(lines)


def _list(values, digits: int = 1) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)
