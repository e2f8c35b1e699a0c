//! The Argo CD resource customizations in `deploy/argocd/resource_customizations`, run in-process
//! on Lua 5.1 (mlua's vendored PUC Lua, built from source: no system package needed), the language
//! of the gopher-lua VM Argo CD runs them in. The sandbox is shaped like Argo CD's: the base
//! library, `table`, and a safe `os` (time, date) reachable through `require("os")`; no `string` or
//! `math` library, so strings have no methods either. Every `health_test.yaml` and
//! `action_test.yaml` (Argo CD's own test layout) is run and compared, and
//! `deploy/argocd/argocd-cm.yaml` must hold the same scripts.
//!
//! Regenerate the ConfigMap with `BKOPS_UPDATE_ARGOCD_CM=1 cargo test --test argocd_lua`.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use mlua::chunk::ChunkMode;
use mlua::{Lua, LuaOptions, LuaString, StdLib, Table, Value as LuaValue};
use serde_json::{Map, Value};

/// The time `os.time()`/`os.date()` report to the scripts: 2025-03-04T05:06:07Z.
const FIXED_TIME: i64 = 1_741_064_767;
const KINDS: [&str; 4] = bkops::run::kinds::JOB_KIND_NAMES;
const ACTIONS: [&str; 4] = ["cancel", "rerun", "resume", "suspend"];
/// The base library as the scripts see it: no `load`, `loadstring`, `dofile`, `setfenv`, ...
const BASE: [&str; 17] = [
    "assert",
    "error",
    "getmetatable",
    "ipairs",
    "next",
    "pairs",
    "pcall",
    "print",
    "rawequal",
    "rawget",
    "rawset",
    "select",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "xpcall",
];
/// A table nested deeper than this is taken for one that holds itself.
const MAX_DEPTH: usize = 100;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd")
}

fn customizations() -> PathBuf {
    root().join("resource_customizations/bkops.io")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml_file(path: &Path) -> Value {
    let y: serde_yaml::Value = serde_yaml::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
    serde_json::to_value(y).expect("YAML maps to JSON")
}

/// Why a script gave no result.
#[derive(Debug)]
enum Failure {
    /// Lua 5.1 does not parse it.
    Load(String),
    /// It raised an error, or returned what JSON cannot hold.
    Run(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Load(e) => write!(f, "does not load: {e}"),
            Failure::Run(e) => write!(f, "fails: {e}"),
        }
    }
}

/// A Lua 5.1 state with the base library and only the libraries the sandbox hands out parts of.
/// No `string` library means no string metatable, so `s:upper()` fails as in Argo CD.
fn lua_5_1() -> Lua {
    Lua::new_with(StdLib::TABLE | StdLib::OS, LuaOptions::default()).expect("a Lua 5.1 state")
}

/// The scripts' globals, built from nothing: `BASE`, four `table` functions, `obj`, and a `require`
/// that yields only the safe `os` (time and date, at `FIXED_TIME` unless given one).
fn sandbox(lua: &Lua, obj: &Value) -> mlua::Result<Table> {
    let globals = lua.globals();
    let env = lua.create_table()?;
    for name in BASE {
        env.raw_set(name, globals.raw_get::<LuaValue>(name)?)?;
    }
    let table: Table = globals.raw_get("table")?;
    let safe_table = lua.create_table()?;
    for name in ["concat", "insert", "remove", "sort"] {
        safe_table.raw_set(name, table.raw_get::<LuaValue>(name)?)?;
    }
    env.raw_set("table", safe_table)?;

    let os: Table = globals.raw_get("os")?;
    let (date, time): (mlua::Function, mlua::Function) = (os.raw_get("date")?, os.raw_get("time")?);
    let safe_os = lua.create_table()?;
    safe_os.raw_set(
        "date",
        lua.create_function(move |lua, (format, t): (Option<LuaString>, Option<f64>)| {
            let format = match format {
                Some(format) => format,
                None => lua.create_string("%c")?,
            };
            date.call::<LuaValue>((format, t.unwrap_or(FIXED_TIME as f64)))
        })?,
    )?;
    safe_os.raw_set(
        "time",
        lua.create_function(move |_, t: Option<LuaValue>| match t {
            Some(t) => time.call::<LuaValue>(t),
            None => Ok(LuaValue::Integer(FIXED_TIME)),
        })?,
    )?;
    env.raw_set(
        "require",
        lua.create_function(move |_, name: String| {
            if name == "os" {
                Ok(safe_os.clone())
            } else {
                Err(mlua::Error::runtime(format!(
                    "module {name} is not available in Argo CD"
                )))
            }
        })?,
    )?;
    env.raw_set("_G", &env)?;
    env.raw_set("obj", to_lua(lua, obj)?)?;
    Ok(env)
}

/// `obj` as the Lua table Argo CD hands the scripts; a JSON null is nil.
fn to_lua(lua: &Lua, v: &Value) -> mlua::Result<LuaValue> {
    Ok(match v {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => LuaValue::Integer(i),
            (None, Some(f)) => LuaValue::Number(f),
            (None, None) => return Err(mlua::Error::runtime(format!("number {n} out of range"))),
        },
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                t.raw_set(k.as_str(), to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// A script's return value as JSON. Lua 5.1 numbers are all doubles: whole ones become JSON
/// integers. A table whose keys are 1..n is an array, one with string keys an object, and an empty
/// one `{}` (see `normalize`).
fn to_json(v: &LuaValue, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("tables nested deeper than {MAX_DEPTH}"));
    }
    match v {
        LuaValue::Nil => Ok(Value::Null),
        LuaValue::Boolean(b) => Ok(Value::Bool(*b)),
        // mlua hands most whole doubles over as integers already, but not -0.
        LuaValue::Integer(i) => Ok(Value::from(*i)),
        LuaValue::Number(f) if f.fract() == 0.0 && f.abs() < 2f64.powi(53) => {
            Ok(Value::from(*f as i64))
        }
        LuaValue::Number(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("{f} cannot become JSON")),
        LuaValue::String(s) => Ok(Value::String(lua_str(s)?)),
        LuaValue::Table(t) => {
            let pairs = t
                .pairs::<LuaValue, LuaValue>()
                .collect::<mlua::Result<Vec<_>>>()
                .map_err(|e| e.to_string())?;
            if !pairs.is_empty() && t.raw_len() == pairs.len() {
                return (1..=pairs.len())
                    .map(|i| to_json(&t.raw_get(i).map_err(|e| e.to_string())?, depth + 1))
                    .collect();
            }
            let mut out = Map::new();
            for (k, item) in pairs {
                let LuaValue::String(k) = k else {
                    return Err(format!(
                        "table key of type {} cannot become JSON",
                        k.type_name()
                    ));
                };
                out.insert(lua_str(&k)?, to_json(&item, depth + 1)?);
            }
            Ok(Value::Object(out))
        }
        other => Err(format!("a {} cannot become JSON", other.type_name())),
    }
}

fn lua_str(s: &LuaString) -> Result<String, String> {
    s.to_str()
        .map(|s| s.to_owned())
        .map_err(|e| format!("not UTF-8: {e}"))
}

/// Runs a script's text in a fresh sandbox (an action changes `obj`; nothing carries over) and
/// returns what it returned, as JSON. `name` names it in error messages.
fn run_source(name: &str, source: &str, obj: &Value) -> Result<Value, Failure> {
    let lua = lua_5_1();
    let env = sandbox(&lua, obj).expect("the sandbox builds");
    let chunk = lua
        .load(source)
        .set_name(name)
        .set_mode(ChunkMode::Text)
        .set_environment(env)
        .into_function()
        .map_err(|e| Failure::Load(e.to_string()))?;
    let result = chunk
        .call::<LuaValue>(())
        .map_err(|e| Failure::Run(e.to_string()))?;
    to_json(&result, 0).map_err(Failure::Run)
}

/// Runs the script at `path`; see `run_source`.
fn run(path: &Path, obj: &Value) -> Result<Value, Failure> {
    run_source(&format!("@{}", path.display()), &read(path), obj)
}

/// Lua cannot tell an empty array from an empty object; Argo CD restores the original shape.
fn normalize(v: Value) -> Value {
    match v {
        Value::Object(m) if m.is_empty() => Value::Array(vec![]),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        other => other,
    }
}

#[test]
fn health_checks_give_the_expected_health() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for kind in KINDS {
        let dir = customizations().join(kind);
        let tests = yaml_file(&dir.join("health_test.yaml"));
        for test in tests["tests"].as_array().expect("tests: [...]") {
            let input = test["inputPath"].as_str().expect("inputPath");
            let want = &test["healthStatus"];
            let obj = yaml_file(&dir.join(input));
            ran += 1;
            match run(&dir.join("health.lua"), &obj) {
                Ok(got) if got["status"] == want["status"] && got["message"] == want["message"] => {
                }
                Ok(got) => failures.push(format!("{kind} {input}: want {want}, got {got}")),
                Err(e) => failures.push(format!("{kind} {input}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "health checks:\n{}",
        failures.join("\n")
    );
    assert!(ran >= 60, "ran only {ran} health tests");
}

#[test]
fn health_tests_cover_every_health_status() {
    for kind in KINDS {
        let tests = yaml_file(&customizations().join(kind).join("health_test.yaml"));
        let seen: std::collections::BTreeSet<&str> = tests["tests"]
            .as_array()
            .expect("tests")
            .iter()
            .filter_map(|t| t["healthStatus"]["status"].as_str())
            .collect();
        for status in ["Healthy", "Progressing", "Degraded", "Suspended"] {
            assert!(seen.contains(status), "{kind}: no test expects {status}");
        }
    }
}

#[test]
fn actions_are_discovered_and_change_what_they_should() {
    let mut failures = Vec::new();
    for kind in KINDS {
        let dir = customizations().join(kind).join("actions");
        let tests = yaml_file(&dir.join("action_test.yaml"));
        for test in tests["discoveryTests"].as_array().expect("discoveryTests") {
            let input = test["inputPath"].as_str().expect("inputPath");
            let obj = yaml_file(&dir.join(input));
            let want: BTreeMap<String, Value> = test["result"]
                .as_array()
                .expect("result")
                .iter()
                .map(|a| {
                    let mut a = a.clone();
                    let name = a["name"].as_str().expect("name").to_owned();
                    a.as_object_mut().expect("action").remove("name");
                    (name, a)
                })
                .collect();
            match run(&dir.join("discovery.lua"), &obj) {
                Ok(Value::Object(got)) => {
                    let got: BTreeMap<String, Value> = got.into_iter().collect();
                    if got != want {
                        failures.push(format!(
                            "{kind} discovery {input}: want {want:?}, got {got:?}"
                        ));
                    }
                }
                Ok(other) => failures.push(format!("{kind} discovery {input}: got {other}")),
                Err(e) => failures.push(format!("{kind} discovery {input}: {e}")),
            }
        }
        let mut covered = std::collections::BTreeSet::new();
        for test in tests["actionTests"].as_array().expect("actionTests") {
            let action = test["action"].as_str().expect("action");
            covered.insert(action.to_owned());
            let input = test["inputPath"].as_str().expect("inputPath");
            let expected = test["expectedOutputPath"]
                .as_str()
                .expect("expectedOutputPath");
            let obj = yaml_file(&dir.join(input));
            let want = normalize(yaml_file(&dir.join(expected)));
            match run(&dir.join(action).join("action.lua"), &obj) {
                Ok(got) if normalize(got.clone()) == want => {}
                Ok(got) => failures.push(format!(
                    "{kind} {action} {input}: want {}, got {}",
                    serde_json::to_string_pretty(&want).unwrap_or_default(),
                    serde_json::to_string_pretty(&got).unwrap_or_default()
                )),
                Err(e) => failures.push(format!("{kind} {action} {input}: {e}")),
            }
        }
        assert_eq!(
            covered,
            ACTIONS.iter().map(|a| a.to_string()).collect(),
            "{kind}: every action needs a test"
        );
    }
    assert!(failures.is_empty(), "actions:\n{}", failures.join("\n"));
}

#[test]
fn the_sandbox_refuses_what_argo_cd_refuses() {
    let obj = serde_json::json!({"metadata": {"name": "x"}});
    for (name, script) in [
        (
            "string method",
            "return { status = obj.metadata.name:upper() }",
        ),
        ("string library", "return { status = string.upper('x') }"),
        ("math library", "return { status = math.floor(1) }"),
        ("global os", "return { status = os.date() }"),
        ("io", "return { status = io.read() }"),
        ("loadstring", "return { status = loadstring('return 1')() }"),
        ("another module", "return { status = require('io') }"),
    ] {
        let got = run_source("=s", script, &obj);
        assert!(
            matches!(got, Err(Failure::Run(_))),
            "{name} must fail in the sandbox, got {got:?}"
        );
    }
    let got = run_source(
        "=ok",
        "local os = require('os')\nreturn { status = os.date('!%Y-%m-%dT%H:%M:%SZ'), n = os.time() }",
        &obj,
    )
    .expect("safe os works");
    assert_eq!(got["status"], "2025-03-04T05:06:07Z");
    assert_eq!(got["n"], FIXED_TIME);
}

#[test]
fn scripts_run_on_lua_5_1() {
    let version: String = lua_5_1().globals().get("_VERSION").expect("_VERSION");
    assert_eq!(version, "Lua 5.1");
    // No integer subtype in 5.1: whole numbers still come back as JSON integers.
    let got =
        run_source("=n", "return { a = 6 / 2, b = 2.5, c = -0 }", &Value::Null).expect("numbers");
    assert_eq!(got, serde_json::json!({"a": 3, "b": 2.5, "c": 0}));
}

/// What Lua 5.2-5.4 parse and Argo CD's Lua 5.1 does not: refused when the script loads.
#[test]
fn lua_5_2_to_5_4_syntax_does_not_load() {
    for (name, script, near) in [
        ("integer division", "return { n = 7 // 2 }", "near '/'"),
        (
            "goto",
            "for i = 1, 3 do\n  if i == 2 then goto done end\nend\n::done::\nreturn {}",
            "near 'done'",
        ),
        (
            "const local",
            "local n <const> = 1\nreturn { n = n }",
            "near '<'",
        ),
        ("bitwise and", "return { n = 3 & 1 }", "near '&'"),
    ] {
        match run_source("=s", script, &Value::Null) {
            Err(Failure::Load(e)) => assert!(e.contains(near), "{name}: {e}"),
            other => panic!("{name} must not load on Lua 5.1, got {other:?}"),
        }
    }
}

/// Lua 5.3+ library calls: not there, so the script fails when it reaches them.
#[test]
fn lua_5_3_library_calls_fail() {
    for (name, script, want) in [
        (
            "math.tointeger",
            "return { n = math.tointeger(3.0) }",
            "attempt to index global 'math' (a nil value)",
        ),
        (
            "utf8.char",
            "return { s = utf8.char(72) }",
            "attempt to index global 'utf8' (a nil value)",
        ),
        (
            "require utf8",
            "local utf8 = require('utf8')\nreturn { s = utf8.char(72) }",
            "module utf8 is not available in Argo CD",
        ),
    ] {
        match run_source("=s", script, &Value::Null) {
            Err(Failure::Run(e)) => assert!(e.contains(want), "{name}: {e}"),
            other => panic!("{name} must fail on Lua 5.1, got {other:?}"),
        }
    }
}

/// Every script of every kind, by path relative to the kind's folder.
fn scripts(kind: &str) -> BTreeMap<String, String> {
    let dir = customizations().join(kind);
    let mut out = BTreeMap::new();
    out.insert("health.lua".to_owned(), read(&dir.join("health.lua")));
    out.insert(
        "actions/discovery.lua".to_owned(),
        read(&dir.join("actions/discovery.lua")),
    );
    for action in ACTIONS {
        let rel = format!("actions/{action}/action.lua");
        out.insert(rel.clone(), read(&dir.join(&rel)));
    }
    out
}

#[test]
fn every_kind_runs_the_same_scripts_in_lua_5_1_syntax() {
    let reference = scripts(KINDS[0]);
    for kind in KINDS {
        assert_eq!(
            scripts(kind),
            reference,
            "{kind}'s scripts differ from {}'s: the four kinds share one status shape",
            KINDS[0]
        );
    }
    // Argo CD runs gopher-lua (Lua 5.1): no 5.3+ operators or syntax, no string/math library.
    for (rel, text) in &reference {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("--").next().unwrap_or("");
            for bad in [
                "//", "goto ", "<const>", "<close>", "<<", ">>", " & ", " | ", "string.", "math.",
                "utf8.",
            ] {
                assert!(
                    !code.contains(bad),
                    "{rel}:{}: {bad:?} is not available in Argo CD's Lua",
                    n + 1
                );
            }
            assert!(
                !code.replace("~=", "").contains('~'),
                "{rel}:{}: bitwise ~",
                n + 1
            );
        }
        if text.contains("os.") {
            assert!(
                text.contains("local os = require(\"os\")"),
                "{rel}: Argo CD has no global os; use local os = require(\"os\")"
            );
        }
    }
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `argocd-cm` data keys for every kind, as a ConfigMap to merge into Argo CD's.
fn render_argocd_cm() -> String {
    let mut out = String::from(
        "# Argo CD health checks and actions for the bkops job kinds, as argocd-cm keys.\n\
         # Generated from deploy/argocd/resource_customizations by tests/argocd_lua.rs: do not edit;\n\
         # regenerate with `BKOPS_UPDATE_ARGOCD_CM=1 cargo test --test argocd_lua`.\n\
         # Merge it into argocd-cm (see docs/gitops.md):\n\
         #   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm.yaml\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: argocd-cm\n  labels:\n    app.kubernetes.io/name: argocd-cm\n    app.kubernetes.io/part-of: argocd\n\
         data:\n",
    );
    for kind in KINDS {
        let s = scripts(kind);
        writeln!(out, "  resource.customizations.health.bkops.io_{kind}: |").expect("write");
        writeln!(out, "{}", indent(&s["health.lua"], 4)).expect("write");
        writeln!(out, "  resource.customizations.actions.bkops.io_{kind}: |").expect("write");
        writeln!(out, "    discovery.lua: |").expect("write");
        writeln!(out, "{}", indent(&s["actions/discovery.lua"], 6)).expect("write");
        writeln!(out, "    definitions:").expect("write");
        for action in ACTIONS {
            writeln!(out, "      - name: {action}").expect("write");
            writeln!(out, "        action.lua: |").expect("write");
            let body = &s[&format!("actions/{action}/action.lua")];
            writeln!(out, "{}", indent(body, 10)).expect("write");
        }
    }
    out
}

#[test]
fn argocd_cm_snippet_holds_the_same_scripts() {
    let path = root().join("argocd-cm.yaml");
    let want = render_argocd_cm();
    if std::env::var_os("BKOPS_UPDATE_ARGOCD_CM").is_some() {
        std::fs::write(&path, &want).expect("write argocd-cm.yaml");
    }
    assert!(
        read(&path) == want,
        "deploy/argocd/argocd-cm.yaml is stale: run `BKOPS_UPDATE_ARGOCD_CM=1 cargo test --test argocd_lua`"
    );

    // And it reads back as the files, through a YAML parser.
    let cm = yaml_file(&path);
    for kind in KINDS {
        let s = scripts(kind);
        assert_eq!(
            cm["data"][format!("resource.customizations.health.bkops.io_{kind}")],
            s["health.lua"].as_str()
        );
        let actions_yaml = cm["data"][format!("resource.customizations.actions.bkops.io_{kind}")]
            .as_str()
            .expect("actions key");
        let actions: serde_yaml::Value = serde_yaml::from_str(actions_yaml).expect("actions YAML");
        let actions = serde_json::to_value(actions).expect("JSON");
        assert_eq!(
            actions["discovery.lua"],
            s["actions/discovery.lua"].as_str()
        );
        let defs = actions["definitions"].as_array().expect("definitions");
        assert_eq!(defs.len(), ACTIONS.len());
        for def in defs {
            let name = def["name"].as_str().expect("name");
            assert_eq!(
                def["action.lua"],
                s[&format!("actions/{name}/action.lua")].as_str()
            );
        }
    }
}

#[test]
fn every_testdata_file_is_used() {
    for kind in KINDS {
        for (sub, test_file) in [("", "health_test.yaml"), ("actions", "action_test.yaml")] {
            let dir = customizations().join(kind).join(sub);
            let tests = read(&dir.join(test_file));
            for entry in std::fs::read_dir(dir.join("testdata")).expect("testdata/") {
                let name = entry.expect("entry").file_name();
                let rel = format!("testdata/{}", name.to_string_lossy());
                assert!(
                    tests.contains(&rel),
                    "{kind}/{sub}: {rel} is not used by {test_file}"
                );
            }
        }
    }
}
