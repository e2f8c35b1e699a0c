//! The Argo CD resource customizations in `deploy/argocd/resource_customizations`, run by a real
//! Lua interpreter (`lua5.4`) inside a sandbox shaped like Argo CD's: the base library, `table`,
//! and a safe `os` (time, date) reachable through `require("os")`; no `string` or `math` library,
//! so strings have no methods either. Every `health_test.yaml` and `action_test.yaml` (Argo CD's own
//! test layout) is run and compared, and `deploy/argocd/argocd-cm.yaml` must hold the same scripts.
//!
//! Needs `lua5.4` on PATH (Debian: `apt-get install -y lua5.4`), or `BKOPS_LUA` naming another
//! Lua 5.4 interpreter. Regenerate the ConfigMap with
//! `BKOPS_UPDATE_ARGOCD_CM=1 cargo test --test argocd_lua`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The time `os.time()`/`os.date()` report to the scripts: 2025-03-04T05:06:07Z.
const FIXED_TIME: i64 = 1_741_064_767;
const KINDS: [&str; 4] = ["ProcessJob", "Taskflow", "AgentJob", "ExecuteJob"];
const ACTIONS: [&str; 4] = ["cancel", "rerun", "resume", "suspend"];

/// Runs `script` with `obj` bound and prints the script's return value as JSON.
const HARNESS: &str = r#"
local script_path, obj_path, fixed_time = arg[1], arg[2], math.tointeger(tonumber(arg[3]))

local function readfile(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function quote(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
    return named[c] or string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

local function encode(v)
  local t = type(v)
  if t == "nil" then
    return "null"
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "number" then
    if math.type(v) == "integer" then
      return string.format("%d", v)
    elseif v == math.floor(v) and v > -2^53 and v < 2^53 then
      return string.format("%d", math.floor(v))
    end
    return string.format("%.17g", v)
  elseif t == "string" then
    return quote(v)
  elseif t == "table" then
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    if n == 0 then return "{}" end
    local parts = {}
    if #v == n then
      for i = 1, n do parts[i] = encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do
      if type(k) ~= "string" then error("table key of type " .. type(k) .. " cannot become JSON") end
      keys[#keys + 1] = k
    end
    table.sort(keys)
    for i, k in ipairs(keys) do parts[i] = quote(k) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("a " .. t .. " cannot become JSON")
end

local obj = assert(load(readfile(obj_path), "=object", "t", {}))()

local real_date, real_time = os.date, os.time
local safe_os = {
  date = function(fmt, t) return real_date(fmt or "%c", t or fixed_time) end,
  time = function(t) if t ~= nil then return real_time(t) end return fixed_time end,
}
local env = { obj = obj }
for _, name in ipairs({ "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall",
    "print", "rawequal", "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring",
    "type", "xpcall" }) do
  env[name] = _G[name]
end
env.table = { concat = table.concat, insert = table.insert, remove = table.remove, sort = table.sort }
env.require = function(name)
  if name == "os" then return safe_os end
  error("module " .. tostring(name) .. " is not available in Argo CD", 2)
end
env._G = env

local chunk = assert(load(readfile(script_path), "@" .. script_path, "t", env))
local string_mt = getmetatable("")
local string_index = string_mt.__index
string_mt.__index = function(_, k)
  error("string method '" .. tostring(k) .. "' is not available in Argo CD (no string library)", 2)
end
local ok, result = pcall(chunk)
string_mt.__index = string_index
if not ok then
  io.stderr:write(tostring(result), "\n")
  os.exit(2)
end
io.write(encode(result))
"#;

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

fn lua_interpreter() -> String {
    let lua = std::env::var("BKOPS_LUA").unwrap_or_else(|_| "lua5.4".to_owned());
    match Command::new(&lua).arg("-v").output() {
        Ok(out) if out.status.success() => lua,
        _ => panic!(
            "`{lua}` not found: the Argo CD Lua tests need a Lua 5.4 interpreter. Install it with \
             `apt-get install -y lua5.4` (hack/test.sh and CI do), or set BKOPS_LUA"
        ),
    }
}

/// A Lua table literal for a JSON value (Lua 5.1 and 5.4 alike: decimal byte escapes only).
fn lua_literal(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => write!(out, "{i}").expect("write to String"),
            (None, Some(f)) => write!(out, "{f:?}").expect("write to String"),
            (None, None) => panic!("number {n} out of range"),
        },
        Value::String(s) => {
            out.push('"');
            for b in s.bytes() {
                if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
                    out.push(b as char);
                } else {
                    write!(out, "\\{b:03}").expect("write to String");
                }
            }
            out.push('"');
        }
        Value::Array(items) => {
            out.push('{');
            for item in items {
                lua_literal(item, out);
                out.push_str(", ");
            }
            out.push('}');
        }
        Value::Object(map) => {
            out.push('{');
            for (k, item) in map {
                out.push('[');
                lua_literal(&Value::String(k.clone()), out);
                out.push_str("] = ");
                lua_literal(item, out);
                out.push_str(", ");
            }
            out.push('}');
        }
    }
}

struct Lua {
    interpreter: String,
    dir: tempfile::TempDir,
}

impl Lua {
    fn new() -> Self {
        let interpreter = lua_interpreter();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("harness.lua"), HARNESS).expect("write harness");
        Lua { interpreter, dir }
    }

    /// Runs `script` with `obj` and returns what it returned, as JSON.
    fn run(&self, script: &Path, obj: &Value) -> Result<Value, String> {
        let mut literal = String::from("return ");
        lua_literal(obj, &mut literal);
        let obj_path = self.dir.path().join("object.lua");
        std::fs::write(&obj_path, literal).expect("write object");
        let out = Command::new(&self.interpreter)
            .arg(self.dir.path().join("harness.lua"))
            .arg(script)
            .arg(&obj_path)
            .arg(FIXED_TIME.to_string())
            .output()
            .expect("run lua");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout).trim()
            )
        })
    }
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
    let lua = Lua::new();
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
            match lua.run(&dir.join("health.lua"), &obj) {
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
    let lua = Lua::new();
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
            match lua.run(&dir.join("discovery.lua"), &obj) {
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
            match lua.run(&dir.join(action).join("action.lua"), &obj) {
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
    let lua = Lua::new();
    let dir = tempfile::tempdir().expect("temp dir");
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
    ] {
        let path = dir.path().join("s.lua");
        std::fs::write(&path, script).expect("write script");
        assert!(
            lua.run(&path, &obj).is_err(),
            "{name} must fail in the sandbox"
        );
    }
    let path = dir.path().join("ok.lua");
    std::fs::write(
        &path,
        "local os = require('os')\nreturn { status = os.date('!%Y-%m-%dT%H:%M:%SZ'), n = os.time() }",
    )
    .expect("write script");
    let got = lua.run(&path, &obj).expect("safe os works");
    assert_eq!(got["status"], "2025-03-04T05:06:07Z");
    assert_eq!(got["n"], FIXED_TIME);
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
