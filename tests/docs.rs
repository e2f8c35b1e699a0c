//! The Markdown docs stand alone: every relative link in them (README.md, docs/, and every other
//! `.md` file of the repository) points at a file or folder inside the repository, and a link to
//! a heading of a Markdown file names a heading that exists. Users clone the repository alone.

use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.md` file of the repository, outside build output and hidden folders.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    walk(&path, out);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out.sort();
    out
}

/// The text outside fenced code blocks and inline code spans.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop `code spans`: a link inside one is not a link.
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of inline links `[text](target)` and reference definitions `[name]: target`.
fn link_targets(text: &str) -> Vec<String> {
    let text = prose(text);
    let mut targets = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(['<', '>']).to_owned());
    }
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('[')
            && let Some(i) = line.find("]: ")
        {
            let target = line[i + 3..].split_whitespace().next().unwrap_or("");
            targets.push(target.to_owned());
        }
    }
    targets
}

/// GitHub's anchor for a heading: lower case, spaces to hyphens, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// `base` joined with the relative `target`, or `None` when a `..` climbs above the repository.
fn resolve(base: &Path, target: &str, root: &Path) -> Option<PathBuf> {
    let relative_dir = base.parent()?.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = relative_dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for component in Path::new(target).components() {
        match component {
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().fold(root.to_path_buf(), |p, s| p.join(s)))
}

#[test]
fn every_relative_link_resolves_inside_the_repository() {
    let root = root();
    let files = markdown_files();
    assert!(
        files.iter().any(|f| f.ends_with("README.md")) && files.len() > 5,
        "found the docs: {files:?}"
    );
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for target in link_targets(&text) {
            if target.is_empty()
                || target.contains("://")
                || target.starts_with("mailto:")
                || target.starts_with("//")
            {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                Some(file.clone())
            } else {
                resolve(file, path, &root)
            };
            let Some(resolved) = resolved else {
                broken.push(format!("{shown}: {target} leaves the repository"));
                continue;
            };
            if !resolved.exists() {
                broken.push(format!("{shown}: {target} does not exist"));
                continue;
            }
            if let Some(fragment) = fragment
                && resolved.extension().is_some_and(|e| e == "md")
            {
                let linked = std::fs::read_to_string(&resolved).unwrap_or_default();
                if !anchors(&linked).iter().any(|a| a == fragment) {
                    broken.push(format!("{shown}: {target} names no heading of that file"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn the_link_checker_sees_links_and_climbs() {
    let text = "See [a](docs/a.md#x) and `[b](not/a/link)`.\n```\n[c](neither)\n```\n[d]: e.md\n";
    assert_eq!(link_targets(text), ["docs/a.md#x", "e.md"]);
    assert_eq!(slug(" GSEKit (`ProcessJob`)"), "gsekit-processjob");
    assert_eq!(slug(" Exactly once"), "exactly-once");
    let root = Path::new("/repo");
    assert_eq!(
        resolve(&root.join("docs/x.md"), "../src/lib.rs", root),
        Some(root.join("src/lib.rs"))
    );
    assert_eq!(
        resolve(&root.join("docs/x.md"), "../../elsewhere/notes.md", root),
        None
    );
    assert_eq!(resolve(&root.join("README.md"), "../x.md", root), None);
}
