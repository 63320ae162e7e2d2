//! The page, rendered on the server: tables and inline SVG charts, no script. Every string
//! that came from a miner or a record goes through [`esc`].

use std::fmt::Write;

use super::model::{Answer, View};

/// Rounds listed in full.
const RECENT_ROUNDS: usize = 20;
/// Rounds in the outcome-mix chart.
const CHART_ROUNDS: usize = 40;
/// Points per miner in the score chart.
const CHART_POINTS: usize = 200;
/// Last answers shown per miner.
const LAST_ANSWERS: usize = 8;

/// HTML-escapes `s` for text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn short(hotkey: &str) -> String {
    if hotkey.chars().count() > 12 {
        let head: String = hotkey.chars().take(6).collect();
        let tail: String = hotkey
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{head}…{tail}")
    } else {
        hotkey.to_owned()
    }
}

const PALETTE: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn outcome_colour(kind: &str) -> &'static str {
    match kind {
        "resolved" => "#2ca02c",
        "unresolved" => "#d62728",
        "patch_rejected" => "#ff7f0e",
        "empty_patch" => "#bdbdbd",
        "tampered" => "#9467bd",
        "environment_error" => "#8c564b",
        "timeout" => "#e377c2",
        "unreachable" => "#7f7f7f",
        "protocol_error" => "#17becf",
        _ => "#bcbd22",
    }
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ddd;padding:3px 8px;\
text-align:left;vertical-align:top}th{background:#f4f4f4}.num{text-align:right}\
.o{display:inline-block;padding:0 4px;border-radius:3px;color:#fff;margin:1px}\
h2{margin-top:1.5em}svg{background:#fafafa;border:1px solid #ddd}code{font-size:12px}";

/// The whole page.
pub fn page(view: &View, answers: &[Answer]) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>agentao validator</title>\
         <style>{STYLE}</style></head><body><h1>agentao validator</h1><p id=\"summary\">{} answers, \
         {} rounds, {} miners, {} tasks.",
        answers.len(),
        view.rounds.len(),
        view.miners.len(),
        view.tasks.len()
    );
    for (kind, n) in &view.outcome_totals {
        let _ = write!(h, " {}", badge(kind, &format!("{} {n}", esc(kind))));
    }
    h.push_str("</p>");
    miners(&mut h, view, answers);
    h.push_str("<h2>Charts</h2>");
    score_chart(&mut h, view, answers);
    outcome_chart(&mut h, view, answers);
    rounds(&mut h, view, answers);
    tasks(&mut h, view);
    h.push_str("</body></html>");
    h
}

fn badge(kind: &str, text: &str) -> String {
    format!(
        "<span class=\"o\" style=\"background:{}\">{text}</span>",
        outcome_colour(kind)
    )
}

fn miners(h: &mut String, view: &View, answers: &[Answer]) {
    h.push_str(
        "<h2>Miners</h2><table id=\"miners\"><tr><th>uid</th><th>hotkey</th><th>moving average</th>\
         <th>weight</th><th>answers</th><th>outcomes</th><th>last answers</th><th>model / agent</th></tr>",
    );
    for m in &view.miners {
        let fmt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.4}"));
        let _ = write!(
            h,
            "<tr class=\"miner\" data-hotkey=\"{}\"><td class=\"num\">{}</td><td title=\"{}\"><code>{}</code></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>",
            esc(&m.hotkey),
            m.uid,
            esc(&m.hotkey),
            esc(&short(&m.hotkey)),
            fmt(m.average),
            fmt(m.weight),
            m.answers
        );
        for (kind, n) in &m.outcomes {
            h.push_str(&badge(kind, &format!("{} {n}", esc(kind))));
        }
        h.push_str("</td><td>");
        for &i in m.history.iter().rev().take(LAST_ANSWERS) {
            let a = &answers[i];
            let _ = write!(
                h,
                "<a href=\"answers/{}/patch\" title=\"{} {:.3}\">{}</a> ",
                a.seq,
                esc(&a.outcome),
                a.final_score,
                badge(&a.outcome, &format!("{:.2}", a.final_score))
            );
        }
        h.push_str("</td><td>");
        if let Some(&i) = m.history.last() {
            let a = &answers[i];
            let _ = write!(h, "{} / {}", esc(&a.model), esc(&a.agent));
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</table>");
}

fn score_chart(h: &mut String, view: &View, answers: &[Answer]) {
    let (w, ht, pad) = (720.0, 220.0, 30.0);
    let n = answers.len().max(2) as f64;
    let _ = write!(
        h,
        "<h3>Score over time, per miner</h3><svg id=\"score-chart\" width=\"{w}\" height=\"{ht}\" \
         viewBox=\"0 0 {w} {ht}\" role=\"img\"><title>score per answer, per miner</title>\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"{}\" font-size=\"10\">1</text><text x=\"2\" y=\"{}\" font-size=\"10\">0</text>",
        ht - pad,
        w - pad,
        ht - pad,
        ht - pad,
        pad + 4.0,
        ht - pad
    );
    for (k, m) in view.miners.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let step = m.history.len().div_ceil(CHART_POINTS).max(1);
        let points: Vec<String> = m
            .history
            .iter()
            .step_by(step)
            .map(|&i| {
                let x = pad + (i as f64 / (n - 1.0)) * (w - 2.0 * pad);
                let y = ht - pad - answers[i].final_score.clamp(0.0, 1.0) * (ht - 2.0 * pad);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = write!(
            h,
            "<polyline class=\"miner-line\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
        for p in points.iter().rev().take(1) {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                h,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>"
            );
        }
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"{colour}\">uid {} {}</text>",
            w - 150.0,
            14.0 + 12.0 * k as f64,
            m.uid,
            esc(&short(&m.hotkey))
        );
    }
    h.push_str("</svg>");
}

fn outcome_chart(h: &mut String, view: &View, answers: &[Answer]) {
    let rounds: Vec<_> = view.rounds.iter().rev().take(CHART_ROUNDS).rev().collect();
    let (w, ht, pad) = (720.0, 200.0, 30.0);
    let _ = write!(
        h,
        "<h3>Outcome mix per round</h3><svg id=\"outcome-chart\" width=\"{w}\" height=\"{ht}\" \
         viewBox=\"0 0 {w} {ht}\" role=\"img\"><title>outcomes per round</title>"
    );
    let slot = (w - 2.0 * pad - 150.0) / rounds.len().max(1) as f64;
    for (k, r) in rounds.iter().enumerate() {
        let total = r.answers.len().max(1) as f64;
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for &i in &r.answers {
            *counts.entry(answers[i].outcome.as_str()).or_default() += 1;
        }
        let mut y = ht - pad;
        for (kind, c) in counts {
            let bh = (c as f64 / total) * (ht - 2.0 * pad);
            y -= bh;
            let _ = write!(
                h,
                "<rect class=\"bar\" data-outcome=\"{}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" \
                 fill=\"{}\"><title>{}: {} {c}</title></rect>",
                esc(kind),
                pad + k as f64 * slot,
                (slot * 0.8).max(1.0),
                outcome_colour(kind),
                esc(&r.id),
                esc(kind)
            );
        }
    }
    for (k, kind) in view.outcome_totals.keys().enumerate() {
        let y = 14.0 + 14.0 * k as f64;
        let _ = write!(
            h,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{y}\" font-size=\"11\">{}</text>",
            w - 140.0,
            y - 9.0,
            outcome_colour(kind),
            w - 125.0,
            esc(kind)
        );
    }
    h.push_str("</svg>");
}

fn rounds(h: &mut String, view: &View, answers: &[Answer]) {
    h.push_str("<h2>Recent rounds</h2>");
    for r in view.rounds.iter().rev().take(RECENT_ROUNDS) {
        let first = &answers[r.answers[0]];
        let _ = write!(
            h,
            "<h3 class=\"round\">{} <small>{} · task <code>{}</code></small></h3><table class=\"answers\">\
             <tr><th>miner</th><th>model</th><th>agent</th><th>outcome</th><th>score</th><th>latency (s)</th>\
             <th>cost ($)</th><th>patch</th><th>tests</th></tr>",
            esc(&r.id),
            esc(&first.recorded_at),
            esc(&first.instance_id)
        );
        for &i in &r.answers {
            let a = &answers[i];
            let _ = write!(
                h,
                "<tr class=\"answer\"><td>uid {} <code>{}</code></td><td class=\"model\">{}</td><td class=\"agent\">{}</td>\
                 <td class=\"outcome\">{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.4}</td>\
                 <td><a href=\"answers/{}/patch\">patch</a></td><td><a href=\"answers/{}/tests\">test log</a></td></tr>",
                a.miner_uid,
                esc(&short(&a.miner_hotkey)),
                esc(&a.model),
                esc(&a.agent),
                badge(&a.outcome, &esc(&a.outcome)),
                a.final_score,
                a.response_seconds,
                a.cost_usd,
                a.seq,
                a.seq
            );
        }
        h.push_str("</table>");
    }
}

/// A task's difficulty: its level and its features as short `name value` pairs (records of
/// the first layout kept the features in `difficulty`).
fn difficulty(level: &str, features: &str) -> String {
    let object = |s: &str| match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(m)) => Some(m),
        _ => None,
    };
    let mut parts = Vec::new();
    let mut feats = object(features);
    match object(level) {
        Some(m) => feats = feats.or(Some(m)),
        None if !level.is_empty() => parts.push(level.to_owned()),
        None => {}
    }
    if let Some(m) = feats {
        parts.extend(m.iter().map(|(k, v)| format!("{k} {v}")));
    }
    parts.join(", ")
}

fn tasks(h: &mut String, view: &View) {
    h.push_str(
        "<h2>Tasks</h2><table id=\"tasks\"><tr><th>task</th><th>package</th><th>source</th><th>kind</th>\
         <th>difficulty</th><th>answers</th><th>resolved rate</th></tr>",
    );
    for t in &view.tasks {
        let _ = write!(
            h,
            "<tr class=\"task\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{:.0}%</td></tr>",
            esc(&t.instance_id),
            esc(&t.package),
            t.source(),
            esc(&t.kind),
            esc(&difficulty(&t.difficulty, &t.difficulty_features)),
            t.answers,
            100.0 * t.resolved as f64 / t.answers.max(1) as f64
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
