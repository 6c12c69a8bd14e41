"""report.html: one self-contained page (CSS inline, images as data URIs, no script, no network).

Verdict first, then the evidence a person needs to judge it: per-class detection figures, the
reversed triggers, the synthetic samples per class, before/after metrics, timings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from .columns import OVERLAP_NOTE, detector_columns, purification_steps
from .escape import html as escape
from .images import data_uri

COLOURS = {"clean": "#1a7f37", "suspicious": "#9a6700", "backdoored": "#cf222e"}

CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin:16px 0}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:0 0 12px}
.verdict{color:#fff;border:none}
.verdict .big{font-size:34px;font-weight:700;letter-spacing:.5px;text-transform:uppercase}
.verdict p{margin:6px 0}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{border-bottom:1px solid #d0d7de;padding:4px 8px;text-align:right}
th:first-child,td:first-child,td.l,th.l{text-align:left}
tr.flag td{background:#ffebe9;font-weight:600}
.bar{display:inline-block;height:10px;background:#0969da;vertical-align:middle}
img.pix{image-rendering:pixelated;max-width:100%;border:1px solid #d0d7de}
code{font-size:13px;background:#eff1f3;padding:1px 4px;border-radius:4px;word-break:break-all}
.muted{color:#59636e;font-size:13px}
details pre{white-space:pre-wrap;font-size:12px;max-height:480px;overflow:auto}
"""


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _num(value: Any, digits: int = 2) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return escape(str(value)) if value is not None else "—"


def _verdict_section(report: dict[str, Any]) -> str:
    v = report.get("verdict")
    if not v:
        return ('<section class="verdict" style="background:#59636e"><div class="big" id="verdict">no verdict</div>'
                "<p>This report has no detection block (detection was switched off).</p></section>")
    colour = COLOURS.get(v["verdict"], "#59636e")
    names = report.get("spec", {}).get("class_names") or []
    targets = ", ".join(f"{t} ({escape(names[t])})" if t < len(names) else str(t) for t in v["suspected_targets"])
    parts = [f'<section class="verdict" style="background:{colour}">',
             f'<div class="big" id="verdict" data-verdict="{escape(v["verdict"])}">{escape(v["verdict"])}</div>',
             f"<p>score (largest voting anomaly index, on reach's scale) <b>{v['score']:.2f}</b> — flagged above "
             f"{v.get('thresholds', {}).get('threshold', 2):g}"
             + (f"; suspected target class(es): <b>{targets}</b>" if targets else "") + "</p>"]
    parts += [f"<p>{escape(reason)}</p>" for reason in v.get("reasons", [])]
    parts.append("</section>")
    purified = v.get("purified")
    if purified is not None:  # an audit: whether the purified model may ship comes first
        ok = v.get("purified_passes")
        reasons = "".join(f"<p>{escape(r)}</p>" for r in (v.get("verification") or {}).get("decided_by", []))
        parts.insert(0, f'<section class="verdict" style="background:{COLOURS.get(purified, "#59636e")}">'
                        f'<div class="big" id="purified" data-verdict="{escape(purified)}">purified model: '
                        f'{escape(purified)} — {"passes verification" if ok else "FAILS verification"}</div>'
                        f"{reasons}</section>")
    return "\n".join(parts)


def _model_section(report: dict[str, Any]) -> str:
    spec, inp = report.get("spec", {}), report["input"]
    rows = [("model", f"<code>{escape(inp['path'])}</code>"), ("sha256", f"<code>{inp['sha256']}</code>"),
            ("input", f"{spec.get('channels')}×{spec.get('height')}×{spec.get('width')} {escape(str(spec.get('layout')))}, "
                      f"{spec.get('num_classes')} classes"),
            ("conversion parity", f"max |Δ| vs onnxruntime {report['conversion']['parity'].get('max_abs', 0):.1e} "
                                  f"({'OK' if report['conversion']['parity'].get('ok') else 'FAILED'})")]
    if report.get("output"):
        rows.append(("purified model", f"<code>{escape(report['output']['path'])}</code> "
                                       f"(sha256 <code>{report['output']['sha256']}</code>)"))
    rows.append(("tool", f"auditor {escape(report['tool']['version'])}, seed {report.get('seed')}, "
                         f"{escape(str(report.get('created')))}"))
    body = "".join(f'<tr><th class="l">{k}</th><td class="l">{v}</td></tr>' for k, v in rows)
    return f"<section><h1>auditor {escape(report.get('command', ''))} report</h1><table>{body}</table></section>"


def _detection_section(report: dict[str, Any], key: str = "detection", title: str = "Detection per class") -> str:
    det = report.get(key)
    if not det:
        return ""
    flagged = set((report.get("verdict") or {}).get("suspected_targets", [])) if key == "detection" else set()
    rows = det["per_class"]
    top = max([r.get("neural_cleanse.mask_l1") or 0 for r in rows] + [1e-9])
    columns = detector_columns(report, key)
    head = ("<tr><th class='l'>class</th><th>NC anomaly index</th><th>trigger L1 norm</th><th class='l'></th>"
            "<th>trigger success</th>"
            + "".join(f"<th>{escape(c.label)} index{' (votes)' if c.votes else ''}</th>"
                      + (f"<th>{escape(c.heading)}</th>" if c.figure else "")
                      for c in columns) + "</tr>")
    body = []
    for r in rows:
        norm = r.get("neural_cleanse.mask_l1")
        width = int(160 * (norm or 0) / top)
        cells = "".join(f"<td>{_num(r.get(f'{c.detector}.index'))}</td>"
                        + ((f"<td>{_pct(r.get(f'{c.detector}.{c.figure}'))}</td>" if c.percent
                            else f"<td>{_num(r.get(f'{c.detector}.{c.figure}'))}</td>") if c.figure else "")
                        for c in columns)
        body.append(
            f"<tr class=\"{'flag' if r['class'] in flagged else ''}\"><td>{r['class']} {escape(r['name'])}</td>"
            f"<td>{_num(r.get('neural_cleanse.index'))}</td><td>{_num(norm, 1)}</td>"
            f"<td class='l'><span class='bar' style='width:{width}px'></span></td>"
            f"<td>{_pct(r.get('neural_cleanse.attack_success'))}</td>{cells}</tr>")
    meanings = "".join(f" <b>{escape(c.label)}</b>: {escape(det['detectors'][c.detector].get('meaning', ''))}."
                       for c in columns if det["detectors"][c.detector].get("meaning"))
    note = ("<p class='muted'>Neural Cleanse on synthetic samples: the smallest mask+pattern that flips the other "
            "classes into each class. A backdoor target needs a much smaller trigger than natural classes: anomaly "
            "index = (median − norm) / (1.4826 × MAD). The other detectors' indices are high where a class stands "
            "out; only the voting ones decide the verdict." + meanings + "</p>")
    return f"<section><h2>{title}</h2>{note}<table>{head}{''.join(body)}</table></section>"


def _image_section(folder: Path, report: dict[str, Any], key: str, title: str, caption: str,
                   locate: Callable[[Path], Path]) -> str:
    name = (report.get("artifacts") or {}).get(key)
    uri = data_uri(locate(folder / name)) if name else None
    if uri is None:
        return ""
    return (f"<section><h2>{title}</h2><p class='muted'>{caption}</p>"
            f"<img class='pix' id='{key}' alt='{escape(title)}' src='{uri}'></section>")


def _evaluation_section(report: dict[str, Any]) -> str:
    ev = report.get("evaluation")
    if not ev:
        return ""
    rows = "".join(f"<tr><td>{w}</td><td>{_pct(ev[w].get('acc'))}</td><td>{_pct(ev[w].get('asr'))}</td>"
                   f"<td>{_pct(ev[w].get('ra'))}</td></tr>" for w in ("before", "after") if w in ev)
    return ("<section><h2>Before / after, measured on real data</h2><table><tr><th class='l'></th><th>accuracy</th>"
            f"<th>attack success</th><th>robust accuracy</th></tr>{rows}</table></section>")


def _purification_section(report: dict[str, Any]) -> str:
    pur = report.get("purification")
    if not pur:
        return ""
    rows = "".join(f"<tr><td>{a.get('attempt')}</td><td class='l'>{escape(str(a.get('purifier')))}</td>"
                   f"<td>{float(a.get('interpolation', 1.0)):g}</td><td>{_pct(a.get('agreement'))}</td>"
                   f"<td>{_pct(a.get('prior_agreement'))}</td><td>{'yes' if a.get('passed') else 'no'}</td></tr>"
                   for a in pur.get("attempts", []))
    basis = (f"<p class='muted'>Guard threshold: {escape(str(pur['threshold_basis']))}.</p>"
             if pur.get("threshold_basis") else "")
    steps, which = purification_steps(pur)
    step_rows = "".join(
        f"<tr><td class='l'>{escape(str(s.get('name')))}</td><td>{'yes' if s.get('acted') else 'no'}</td>"
        f"<td class='l'>{escape(str(s.get('finding') or '; '.join(s.get('notes') or []) or '-'))}</td>"
        f"<td>{float(s.get('seconds') or 0):.1f}</td></tr>" for s in steps)
    step_table = (f"<p>Steps of the {escape(which)}:</p><table><tr><th class='l'>step</th><th>acted</th>"
                  f"<th class='l'>what it found or did</th><th>seconds</th></tr>{step_rows}</table>" if steps else "")
    return (f"<section><h2>Purification: {escape(str(pur.get('status')))}</h2><p>{escape(str(pur.get('message', '')))}</p>"
            f"{basis}<table><tr><th class='l'>attempt</th><th class='l'>method</th><th>share of the change kept</th>"
            "<th>holdout agreement</th><th>prior-probe agreement</th><th>passed</th></tr>"
            f"{rows}</table>{step_table}</section>")


def _inversion_section(report: dict[str, Any]) -> str:
    inv = report.get("inversion")
    if not inv:
        return ""
    kept = (inv.get("kept") or {}).get("overall", {})
    cells = "".join(f"<td>{_num(kept.get(k), 3)}</td>" for k in
                    ("confidence", "input_noise", "param_noise", "worst_input", "worst_param"))
    return ("<section><h2>Synthetic samples: figures</h2><p class='muted'>"
            f"{inv.get('samples', {}).get('total')} samples by {escape(str(inv.get('method')))}; diversity "
            f"{_num((inv.get('diversity') or {}).get('mean'), 3)}. Share of predictions kept under:</p><table><tr>"
            "<th>confidence</th><th>input noise</th><th>parameter noise</th><th>worst-case input</th>"
            f"<th>worst-case parameters</th></tr><tr>{cells}</tr></table></section>")


def _timings_section(report: dict[str, Any]) -> str:
    t = report.get("timings") or {}
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{v:.1f} s</td></tr>" for k, v in t.items())
    note = f"<p>{escape(OVERLAP_NOTE)}</p>" if any("." in k for k in t) else ""
    return f"<section><h2>Time per stage</h2><table>{rows}</table>{note}</section>" if rows else ""


def render_html(report: dict[str, Any], folder: str | Path, locate: Callable[[Path], Path] | None = None) -> str:
    """The page for ``report``; images are read from ``folder`` (where the report's artifacts are), or from
    where ``locate`` says a file of that folder is until it is moved into place (``files.Staging``)."""
    folder = Path(folder)
    locate = locate or (lambda path: path)
    title = f"auditor {report.get('command', '')}: {(report.get('verdict') or {}).get('verdict', 'report')}"
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{escape(title)} — {escape(Path(report['input']['path']).name)}</title><style>{CSS}</style></head><body><main>",
        _verdict_section(report),
        _model_section(report),
        _detection_section(report),
        _image_section(folder, report, "triggers", "Reversed triggers",
                       "One column per class: mask (top), pattern (middle), mask × pattern (bottom); masks scaled to their own maximum.",
                       locate),
        _image_section(folder, report, "synthetic_samples", "Synthetic samples per class",
                       "Stabilized model inversion, one row per class: the only data the audit uses.", locate),
        _inversion_section(report),
        _evaluation_section(report),
        _purification_section(report),
        _detection_section(report, "rescan", "Re-scan of the purified model"),
        _timings_section(report),
        "<section><details><summary>Configuration and full report.json</summary><pre>"
        + escape(json.dumps(report, indent=2, default=str)) + "</pre></details></section>",
        "</main></body></html>", "",
    ]
    return "\n".join(p for p in parts if p)
