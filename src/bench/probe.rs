//! What the benchmark reads from the outside: Prometheus text from the API server and the
//! operator, and a process's peak memory and CPU time from `/proc`.

use std::collections::BTreeMap;

use super::Num;

/// One sample of a Prometheus text exposition: name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name (with any `_total` suffix).
    pub name: String,
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// A label's value, or `""`.
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map(String::as_str).unwrap_or("")
    }
}

/// Parses the samples of `text` named `name` (comments and other metrics are skipped).
pub fn samples(text: &str, name: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_line)
        .filter(|s| s.name == name)
        .collect()
}

/// Where a quantile of a histogram falls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bucket {
    /// In the bucket with this upper bound.
    AtMost(f64),
    /// Past the last finite bound, which is this.
    Above(f64),
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bucket::AtMost(le) => write!(f, "{:.3}", Num(*le)),
            Bucket::Above(le) => write!(f, "> {:.3}", Num(*le)),
        }
    }
}

/// The `q` quantile of histogram `name` over its label sets that have every label of `only`, as
/// the bucket it falls in, and the mean; `None` when empty.
pub fn histogram(text: &str, name: &str, only: &[(&str, &str)], q: f64) -> Option<(Bucket, f64)> {
    let chosen = |s: &Sample| only.iter().all(|(k, v)| s.label(k) == *v);
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for s in samples(text, &format!("{name}_bucket"))
        .into_iter()
        .filter(chosen)
    {
        let le: f64 = match s.label("le") {
            "+Inf" => f64::INFINITY,
            le => le.parse().ok()?,
        };
        buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += s.value;
    }
    let mut cumulative: Vec<(f64, f64)> = buckets.into_values().collect();
    cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
    let count = cumulative.last()?.1;
    if count <= 0.0 {
        return None;
    }
    let sum: f64 = samples(text, &format!("{name}_sum"))
        .iter()
        .filter(|s| chosen(s))
        .map(|s| s.value)
        .sum();
    let last_finite = cumulative
        .iter()
        .rev()
        .map(|(le, _)| *le)
        .find(|le| le.is_finite())
        .unwrap_or(0.0);
    let bucket = match cumulative.iter().find(|(_, c)| *c >= q * count) {
        Some((le, _)) if le.is_finite() => Bucket::AtMost(*le),
        _ => Bucket::Above(last_finite),
    };
    Some((bucket, sum / count))
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let (head, value) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            let name = &line[..open];
            let labels = parse_labels(&line[open + 1..close]);
            let rest = line[close + 1..].split_whitespace().next()?;
            ((name.to_owned(), labels), rest)
        }
        None => {
            let mut parts = line.split_whitespace();
            let name = parts.next()?;
            ((name.to_owned(), BTreeMap::new()), parts.next()?)
        }
    };
    Some(Sample {
        name: head.0,
        labels: head.1,
        value: value.parse().ok()?,
    })
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        // Values may hold escaped quotes.
        let mut value = String::new();
        let mut chars = body.char_indices();
        let mut end = body.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key, value);
        rest = &body[end.min(body.len())..];
    }
    out
}

/// Peak resident memory (`VmHWM`, bytes) and CPU time (user + system, seconds) of `pid`.
pub fn process_usage(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), starting at field 3 (state).
    let rest: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((hwm_kib * 1024, (utime + stime) / clock_ticks()))
}

/// `sysconf(_SC_CLK_TCK)` via `getconf` (100 on every Linux this runs on).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The `q` quantile (0..=1) of `values` (nearest rank); `None` when empty.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_values() {
        let text = "# HELP x\napiserver_request_total{code=\"201\",resource=\"taskflows\",subresource=\"\",verb=\"POST\"} 12\nother 3\nbkops_status_writes_total{kind=\"Taskflow\",outcome=\"in\\\"tent\"} 4\n";
        let s = samples(text, "apiserver_request_total");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].label("verb"), "POST");
        assert_eq!(s[0].label("subresource"), "");
        assert_eq!(s[0].value, 12.0);
        let w = samples(text, "bkops_status_writes_total");
        assert_eq!(w[0].label("outcome"), "in\"tent");
        assert_eq!(samples(text, "other")[0].value, 3.0);
    }

    #[test]
    fn histogram_quantile_is_the_bound_of_its_bucket_over_the_chosen_labels() {
        let text = "\
x_bucket{kind=\"A\",le=\"0.1\"} 90
x_bucket{kind=\"A\",le=\"1.0\"} 98
x_bucket{kind=\"A\",le=\"+Inf\"} 100
x_bucket{kind=\"B\",le=\"0.1\"} 0
x_bucket{kind=\"B\",le=\"1.0\"} 0
x_bucket{kind=\"B\",le=\"+Inf\"} 100
x_sum{kind=\"A\"} 30
x_sum{kind=\"B\"} 170
x_count{kind=\"A\"} 100
x_count{kind=\"B\"} 100
";
        let at_most = |le| Some((Bucket::AtMost(le), 1.0));
        assert_eq!(histogram(text, "x", &[], 0.45), at_most(0.1));
        assert_eq!(histogram(text, "x", &[], 0.49), at_most(1.0));
        // Past the last bound: the report says "> 1.000", not "inf".
        let past = histogram(text, "x", &[], 0.99);
        assert_eq!(past, Some((Bucket::Above(1.0), 1.0)));
        assert_eq!(past.map(|(b, _)| b.to_string()).as_deref(), Some("> 1.000"));
        assert_eq!(histogram(text, "y", &[], 0.5), None);
        // One label set: A's 100 alone, mean 0.3.
        assert_eq!(
            histogram(text, "x", &[("kind", "A")], 0.9),
            Some((Bucket::AtMost(0.1), 0.3))
        );
        assert_eq!(
            histogram(text, "x", &[("kind", "A")], 0.95),
            Some((Bucket::AtMost(1.0), 0.3))
        );
        assert_eq!(histogram(text, "x", &[("kind", "C")], 0.5), None);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.5), Some(50.0));
        assert_eq!(quantile(&mut v, 0.99), Some(99.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn reads_own_usage() {
        let (rss, cpu) = process_usage(std::process::id()).expect("own /proc");
        assert!(rss > 0);
        assert!(cpu >= 0.0);
    }
}
