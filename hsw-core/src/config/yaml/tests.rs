//! The loader's tests: scalars, positions, duplicates, and every budget a hostile file can hit.
use super::*;
use serde_json::json;

#[test]
fn core_schema_scalars() {
    let (v, _) =
        parse("a: 1\nb: 24:00:00\nc: yes\nd: ~\ne: '1'\nf: 1.5\ng: true\nh: 0x1f\ni: -3\n")
            .unwrap();
    assert_eq!(
        v,
        json!({"a":1,"b":"24:00:00","c":"yes","d":null,"e":"1","f":1.5,"g":true,"h":31,"i":-3})
    );
}

#[test]
fn positions_of_keys_and_values() {
    let (_, p) = parse("top:\n  inner: [1, 2]\n  other: x\n").unwrap();
    let inner = p.get("/top/inner").unwrap();
    assert_eq!(inner.key, Some(Pos { line: 2, column: 3 }));
    assert_eq!(
        inner.value,
        Pos {
            line: 2,
            column: 10
        }
    );
    assert_eq!(
        p.get("/top/inner/1").unwrap().value,
        Pos {
            line: 2,
            column: 14
        }
    );
    assert_eq!(
        p.nearest("/top/inner/7/x").unwrap().value,
        Pos {
            line: 2,
            column: 10
        }
    );
}

#[test]
fn duplicate_keys_are_errors_with_the_second_line() {
    let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
    assert_eq!(e.rule, "yaml.duplicate-key");
    assert_eq!(e.pos, Some(Pos { line: 3, column: 1 }));
    assert_eq!(e.path, "/a");
    assert!(
        e.message.contains("first defined at line 1"),
        "{}",
        e.message
    );
}

#[test]
fn empty_and_comment_only_files_are_errors() {
    assert_eq!(parse("").unwrap_err().rule, "yaml.empty");
    assert_eq!(parse("# nothing\n").unwrap_err().rule, "yaml.empty");
}

#[test]
fn syntax_errors_carry_a_line() {
    let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
    assert_eq!(e.rule, "yaml.syntax");
    assert!(e.pos.is_some());
}

#[test]
fn aliases_expand() {
    let (v, _) = parse("base: &b {x: 1}\nother: *b\n").unwrap();
    assert_eq!(v, json!({"base": {"x": 1}, "other": {"x": 1}}));
}

#[test]
fn alias_bomb_fails_fast() {
    let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        s.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    let started = std::time::Instant::now();
    let e = parse(&s).unwrap_err();
    assert_eq!(e.rule, "yaml.too-large");
    assert!(e.message.contains("through aliases"), "{}", e.message);
    // Not a timing test: just a guard that we did not expand 10^12 nodes before failing.
    assert!(started.elapsed().as_secs() < 30);
}

#[test]
fn a_file_of_too_many_nodes_is_not_called_an_alias_bomb() {
    let s: String = (0..=MAX_NODES / 2).map(|i| format!("k{i}: v\n")).collect();
    let e = parse(&s).unwrap_err();
    assert_eq!(e.rule, "yaml.too-large");
    assert!(
        e.message
            .contains(&format!("has more than {MAX_NODES} nodes"))
            && !e.message.contains("alias"),
        "{}",
        e.message
    );
}

#[test]
fn aliases_of_a_long_value_hit_the_byte_budget() {
    // 60 KB value, aliased 200 times: 12 MB once expanded, far under the node budget.
    let mut s = format!("big: &big \"{}\"\nlist:\n", "x".repeat(60_000));
    for _ in 0..200 {
        s.push_str("  - *big\n");
    }
    let e = parse(&s).unwrap_err();
    assert_eq!(e.rule, "yaml.too-large");
    assert!(e.message.contains("MiB"), "{}", e.message);
    assert!(e.pos.is_some());
    // The same value aliased a few times is fine.
    let ok = format!("big: &big \"{}\"\nlist: [*big, *big]\n", "x".repeat(60_000));
    assert!(parse(&ok).is_ok());
}

#[test]
fn long_scalars_and_keys_are_refused() {
    let e = parse(&format!("a: {}\n", "y".repeat(MAX_SCALAR_BYTES + 1))).unwrap_err();
    assert_eq!((e.rule, e.path.as_str()), ("yaml.too-large", "/a"));
    assert!(e.message.contains("the most is 65536"), "{}", e.message);
    // An implicit key that long is a syntax error to the parser already; an explicit one reaches us.
    let e = parse(&format!("? {}\n: 1\n", "k".repeat(MAX_KEY_BYTES + 1))).unwrap_err();
    assert_eq!(e.rule, "yaml.too-large");
    assert!(e.message.contains("key"), "{}", e.message);
    assert!(parse(&format!(
        "? {}\n: {}\n",
        "k".repeat(MAX_KEY_BYTES),
        "y".repeat(MAX_SCALAR_BYTES)
    ))
    .is_ok());
}

#[test]
fn positions_of_aliases_are_shared_not_copied() {
    let mut s = String::from("base: &b\n");
    for i in 0..500 {
        s.push_str(&format!("  k{i}: {i}\n"));
    }
    s.push_str("copies:\n");
    for _ in 0..100 {
        s.push_str("  - *b\n");
    }
    let (v, p) = parse(&s).unwrap();
    assert_eq!(v["copies"][99]["k499"], 499);
    // 1 root + 501 for the anchored map + 1 for `copies`: the 100 copies add no entries.
    assert_eq!(p.entries.len(), 503);
    let copy = p.get("/copies/99/k7").unwrap();
    assert_eq!(copy, p.get("/base/k7").unwrap());
    assert_eq!(p.get("/copies/99").unwrap().key, None);
    assert_eq!(
        p.get("/copies").unwrap().key,
        Some(Pos {
            line: 502,
            column: 1
        })
    );
    assert!(p.get("/copies/100").is_none());
    assert_eq!(
        p.nearest("/copies/100/x").unwrap(),
        p.get("/copies").unwrap()
    );
}

#[test]
fn duplicate_keys_are_found_among_many() {
    let mut s = String::new();
    for i in 0..20_000 {
        s.push_str(&format!("k{i}: {i}\n"));
    }
    s.push_str("k12345: again\n");
    let e = parse(&s).unwrap_err();
    assert_eq!((e.rule, e.path.as_str()), ("yaml.duplicate-key", "/k12345"));
    assert!(
        e.message.contains("first defined at line 12346"),
        "{}",
        e.message
    );
}

#[test]
fn deep_nesting_is_bounded() {
    let s = "[".repeat(200) + &"]".repeat(200);
    assert_eq!(parse(&s).unwrap_err().rule, "yaml.too-deep");
}

#[test]
fn multiple_documents_are_refused() {
    assert_eq!(
        parse("a: 1\n---\nb: 2\n").unwrap_err().rule,
        "yaml.multiple-documents"
    );
}

#[test]
fn pointer_tokens_are_escaped() {
    let (_, p) = parse("\"a/b\": {\"c~d\": 1}\n").unwrap();
    assert!(p.get("/a~1b/c~0d").is_some());
}
