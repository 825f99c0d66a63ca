//! The source tree keeps the shape the README's Layout section describes: no source file over
//! 700 lines outside its tests, and no import cycle between the modules of a crate.
//!
//! A cycle is looked for among the children of every module: module `a` depends on its sibling
//! `b` when code in `a` (or below it) names an item of `b` (or below it), through `use` or a
//! path in code, following `pub use` re-exports to where the item is defined. A module naming
//! its own parent or child is not a dependency between siblings. Test code (`#[cfg(test)]`) is
//! left out, and so are paths only a macro sees (derive attributes such as `with = "..."`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

const MAX_LINES: usize = 700;

/// The workspace's library crates, by the directory holding `src/lib.rs`.
const CRATES: [&str; 5] = ["agent", "agent/core", "agent/wire", "collector", "tests"];

/// The workspace, or another checkout named by `EDGEPROBE_LAYOUT_ROOT`.
fn root() -> PathBuf {
    match std::env::var_os("EDGEPROBE_LAYOUT_ROOT") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf(),
    }
}

fn is_test_cfg(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.meta.require_list().is_ok_and(|l| l.tokens.to_string().contains("test")))
}

/// One module of a crate: where it is, what it defines, what it re-exports, what it names.
#[derive(Default)]
struct Module {
    file: PathBuf,
    items: BTreeSet<String>,
    /// Names brought in by `use` (the last segment or the alias), with the full path.
    uses: BTreeMap<String, Vec<String>>,
    /// Glob imports' paths.
    globs: Vec<Vec<String>>,
    /// Every path the module names, absolute where it could be made so.
    refs: Vec<Vec<String>>,
}

struct Crate {
    modules: BTreeMap<Vec<String>, Module>,
}

impl Crate {
    fn load(dir: &Path) -> Crate {
        let mut c = Crate { modules: BTreeMap::new() };
        c.load_file(&dir.join("src/lib.rs"), vec![], true);
        c
    }

    fn load_file(&mut self, file: &Path, path: Vec<String>, is_root: bool) {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // Children of `a.rs` or `a/mod.rs` live in `a/`; of `lib.rs` beside it.
        let dir = if is_root || file.file_name().is_some_and(|n| n == "mod.rs") {
            file.parent().unwrap().to_path_buf()
        } else {
            file.with_extension("")
        };
        self.load_items(file, &dir, path, &ast.items);
    }

    fn load_items(&mut self, file: &Path, dir: &Path, path: Vec<String>, items: &[syn::Item]) {
        let mut m = Module { file: file.to_path_buf(), ..Module::default() };
        let mut children = Vec::new();
        let child_names: BTreeSet<String> = items
            .iter()
            .filter_map(|i| match i {
                syn::Item::Mod(md) if !is_test_cfg(&md.attrs) => Some(md.ident.to_string()),
                _ => None,
            })
            .collect();
        for item in items {
            if is_test_cfg(item_attrs(item)) {
                continue;
            }
            match item {
                syn::Item::Mod(md) => {
                    m.items.insert(md.ident.to_string());
                    children.push(md);
                }
                syn::Item::Use(u) => {
                    let mut out = Vec::new();
                    flatten_use(&u.tree, &mut Vec::new(), &mut out);
                    for (segments, name) in out {
                        let full = absolute(&path, &child_names, &segments);
                        match name {
                            Some(n) => {
                                m.uses.insert(n, full.clone());
                            }
                            None => m.globs.push(full.clone()),
                        }
                        m.refs.push(full);
                    }
                }
                other => {
                    if let Some(name) = item_name(other) {
                        m.items.insert(name);
                    }
                    let mut v = Paths { out: Vec::new() };
                    v.visit_item(other);
                    m.refs.extend(v.out.into_iter().map(|p| absolute(&path, &child_names, &p)));
                }
            }
        }
        self.modules.insert(path.clone(), m);
        for md in children {
            let mut child = path.clone();
            child.push(md.ident.to_string());
            match &md.content {
                Some((_, items)) => self.load_items(file, &dir.join(md.ident.to_string()), child, items),
                None => {
                    let name = md.ident.to_string();
                    let flat = dir.join(format!("{name}.rs"));
                    let file = if flat.exists() { flat } else { dir.join(&name).join("mod.rs") };
                    self.load_file(&file, child, false);
                }
            }
        }
    }

    /// The module that defines what `path` names, following re-exports.
    fn resolve(&self, path: &[String], depth: usize) -> Vec<String> {
        let mut module: Vec<String> = Vec::new();
        for (i, seg) in path.iter().enumerate() {
            let mut next = module.clone();
            next.push(seg.clone());
            if self.modules.contains_key(&next) {
                module = next;
                continue;
            }
            let Some(m) = self.modules.get(&module) else { return module };
            if depth < 8 && !m.items.contains(seg) {
                if let Some(target) = m.uses.get(seg) {
                    let Some(("crate", target)) = target.split_first().map(|(f, r)| (f.as_str(), r)) else {
                        return module;
                    };
                    let mut full = target.to_vec();
                    full.extend_from_slice(&path[i + 1..]);
                    return self.resolve(&full, depth + 1);
                }
                for g in m.globs.iter().filter_map(|g| g.strip_prefix(&["crate".to_string()][..])) {
                    let at = self.resolve(g, depth + 1);
                    let defines =
                        self.modules.get(&at).is_some_and(|gm| gm.items.contains(seg) || gm.uses.contains_key(seg));
                    if defines && at.len() > module.len() {
                        let mut full = g.to_vec();
                        full.extend_from_slice(&path[i..]);
                        return self.resolve(&full, depth + 1);
                    }
                }
            }
            return module;
        }
        module
    }

    /// Cycles among siblings: for each parent module, the dependency edges between its
    /// children, with one example path for each.
    fn cycles(&self) -> Vec<String> {
        let mut edges: BTreeMap<Vec<String>, BTreeMap<String, BTreeMap<String, String>>> = BTreeMap::new();
        for (source, m) in &self.modules {
            for r in &m.refs {
                if r.first().is_none_or(|s| s != "crate") {
                    continue;
                }
                let target = self.resolve(&r[1..], 0);
                let common = source.iter().zip(&target).take_while(|(a, b)| a == b).count();
                if common == source.len() || common == target.len() {
                    continue; // parent and child
                }
                let why = format!("{} names {}", m.file.display(), r.join("::"));
                edges
                    .entry(source[..common].to_vec())
                    .or_default()
                    .entry(source[common].clone())
                    .or_default()
                    .entry(target[common].clone())
                    .or_insert(why);
            }
        }
        let mut found = Vec::new();
        for (parent, graph) in &edges {
            for cycle in sibling_cycles(graph) {
                let steps: Vec<String> =
                    cycle.windows(2).map(|w| format!("  {} -> {}: {}", w[0], w[1], graph[&w[0]][&w[1]])).collect();
                found.push(format!("in crate::{}:\n{}", parent.join("::"), steps.join("\n")));
            }
        }
        found
    }
}

/// One cycle per strongly connected group of siblings, as a closed walk.
fn sibling_cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in graph.get(&n).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for start in graph.keys() {
        if reported.contains(start) || !reach(start).contains(start) {
            continue;
        }
        // A shortest walk back to `start`, by breadth-first search.
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        'search: while let Some(n) = queue.pop_front() {
            for next in graph.get(&n).into_iter().flat_map(|e| e.keys()) {
                if next == start {
                    prev.insert(start.clone(), n.clone());
                    break 'search;
                }
                if !prev.contains_key(next) {
                    prev.insert(next.clone(), n.clone());
                    queue.push_back(next.clone());
                }
            }
        }
        let mut walk = vec![start.clone()];
        let mut at = prev[start].clone();
        while &at != start {
            walk.push(at.clone());
            at = prev[&at].clone();
        }
        walk.push(start.clone());
        walk.reverse();
        reported.extend(walk.iter().cloned());
        out.push(walk);
    }
    out
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn item_name(item: &syn::Item) -> Option<String> {
    let ident = match item {
        syn::Item::Const(i) => &i.ident,
        syn::Item::Enum(i) => &i.ident,
        syn::Item::Fn(i) => &i.sig.ident,
        syn::Item::Macro(i) => i.ident.as_ref()?,
        syn::Item::Static(i) => &i.ident,
        syn::Item::Struct(i) => &i.ident,
        syn::Item::Trait(i) => &i.ident,
        syn::Item::Type(i) => &i.ident,
        syn::Item::Union(i) => &i.ident,
        _ => return None,
    };
    Some(ident.to_string())
}

/// Every path of a use tree, with the name it brings in (None for a glob).
fn flatten_use(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Option<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut full = prefix.clone();
            if name != "self" {
                full.push(name.clone());
            }
            let alias = if name == "self" { prefix.last().cloned() } else { Some(name) };
            out.push((full, alias));
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            if r.ident != "self" {
                full.push(r.ident.to_string());
            }
            out.push((full, Some(r.rename.to_string())));
        }
        syn::UseTree::Glob(_) => out.push((prefix.clone(), None)),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix, out);
            }
        }
    }
}

/// `path` as seen from module `at`, made absolute (`crate::...`) where it starts with `crate`,
/// `self`, `super` or one of the module's children; other paths (other crates, names in scope)
/// are left as they are.
fn absolute(at: &[String], children: &BTreeSet<String>, path: &[String]) -> Vec<String> {
    let mut base: Vec<String> = at.to_vec();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => return path.to_vec(),
        Some("self") => rest = &path[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(first) if children.contains(first) => {}
        _ => return path.to_vec(),
    }
    let mut out = vec!["crate".to_string()];
    out.extend(base);
    out.extend_from_slice(rest);
    out
}

/// Paths in code (types, expressions, patterns, trait bounds), skipping test-only items.
struct Paths {
    out: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.out.push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }

    fn visit_item(&mut self, i: &'ast syn::Item) {
        if !is_test_cfg(item_attrs(i)) {
            syn::visit::visit_item(self, i);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_cfg(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}

/// Lines of `text` outside `#[cfg(test)]` modules written inline (rustfmt puts their closing
/// brace alone at the start of a line).
fn lines_outside_tests(text: &str) -> usize {
    let mut count = 0;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|l| l.starts_with("mod ") && l.ends_with('{')) {
            for l in lines.by_ref() {
                if l == "}" {
                    break;
                }
            }
            continue;
        }
        count += 1;
    }
    count
}

#[test]
fn no_source_file_is_over_700_lines_outside_its_tests() {
    let mut long = Vec::new();
    let mut seen = 0;
    for dir in CRATES {
        let c = Crate::load(&root().join(dir));
        let files: BTreeSet<&PathBuf> = c.modules.values().map(|m| &m.file).collect();
        for file in files {
            seen += 1;
            let n = lines_outside_tests(&std::fs::read_to_string(file).unwrap());
            if n > MAX_LINES {
                long.push(format!("{}: {n} lines", file.display()));
            }
        }
    }
    assert!(seen > 50, "only {seen} source files found: is the tree where this test looks?");
    assert!(long.is_empty(), "over {MAX_LINES} lines outside tests; split them:\n{}", long.join("\n"));
}

#[test]
fn no_import_cycle_between_modules_of_a_crate() {
    let mut all = Vec::new();
    for dir in CRATES {
        let c = Crate::load(&root().join(dir));
        all.extend(c.cycles().into_iter().map(|s| format!("{dir}: {s}")));
    }
    assert!(all.is_empty(), "import cycles:\n{}", all.join("\n"));
}

/// The checker itself: a cycle through a re-export and `super` is found, and a parent naming
/// its child is not one.
#[test]
fn the_cycle_check_finds_a_cycle_it_is_shown() {
    let dir = std::env::temp_dir().join(format!("edgeprobe-layout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src/b")).unwrap();
    let write = |p: &str, t: &str| std::fs::write(dir.join(p), t).unwrap();
    write("src/lib.rs", "pub mod a;\npub mod b;\npub use b::Thing;\nfn top() -> a::A { a::A }\n");
    write("src/a.rs", "pub struct A;\npub fn f(_: crate::Thing) {}\n");
    write("src/b/mod.rs", "mod inner;\npub use inner::Thing;\n");
    write("src/b/inner.rs", "pub struct Thing;\nfn g() { super::super::a::f(Thing) }\n");
    let cycles = Crate::load(&dir).cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].contains("a -> b") && cycles[0].contains("b -> a"), "{}", cycles[0]);
    write("src/b/inner.rs", "pub struct Thing;\n");
    assert!(Crate::load(&dir).cycles().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
