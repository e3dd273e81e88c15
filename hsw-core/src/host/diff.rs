//! A small line-based unified diff, for showing planned file edits. No IO.

/// One line operation of an edit script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Line `i` of old equals line `j` of new.
    Keep(usize, usize),
    /// Line `i` of old is removed.
    Del(usize),
    /// Line `j` of new is added.
    Add(usize),
}

/// Beyond this many cells the middle of the files is shown as one replaced block.
const MAX_CELLS: usize = 4_000_000;

/// The unified diff (`---`, `+++`, `@@` hunks with `context` lines) from `old` to `new`; empty
/// when they are equal. A missing final newline is marked as `diff` does.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str, context: usize) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = script(&a, &b);
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Keep(..)))
        .map(|(k, _)| k)
        .collect();
    let mut k = 0;
    while k < changed.len() {
        let first = changed.get(k).copied().unwrap_or(0);
        let mut last = first;
        k += 1;
        while let Some(&next) = changed.get(k) {
            if next - last > 2 * context + 1 {
                break;
            }
            last = next;
            k += 1;
        }
        let start = first.saturating_sub(context);
        let end = (last + context + 1).min(ops.len());
        let hunk = ops.get(start..end).unwrap_or_default();
        let (mut old_start, mut new_start) = position(&ops, start);
        let old_len = hunk.iter().filter(|o| !matches!(o, Op::Add(_))).count();
        let new_len = hunk.iter().filter(|o| !matches!(o, Op::Del(_))).count();
        // Unified diff numbers from 1; an empty range names the line before it.
        if old_len > 0 {
            old_start += 1;
        }
        if new_len > 0 {
            new_start += 1;
        }
        out.push_str(&format!(
            "@@ -{old_start},{old_len} +{new_start},{new_len} @@\n"
        ));
        for op in hunk {
            let (sign, line) = match *op {
                Op::Keep(i, _) => (' ', a.get(i).copied().unwrap_or_default()),
                Op::Del(i) => ('-', a.get(i).copied().unwrap_or_default()),
                Op::Add(j) => ('+', b.get(j).copied().unwrap_or_default()),
            };
            out.push(sign);
            match line.strip_suffix('\n') {
                Some(l) => {
                    out.push_str(l);
                    out.push('\n');
                }
                None => {
                    out.push_str(line);
                    out.push_str("\n\\ No newline at end of file\n");
                }
            }
        }
    }
    out
}

/// Old and new line counts before op `at`.
fn position(ops: &[Op], at: usize) -> (usize, usize) {
    let before = ops.get(..at).unwrap_or_default();
    (
        before.iter().filter(|o| !matches!(o, Op::Add(_))).count(),
        before.iter().filter(|o| !matches!(o, Op::Del(_))).count(),
    )
}

/// A shortest edit script: common prefix and suffix, then an LCS table over the middle.
fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a
        .get(prefix..)
        .unwrap_or_default()
        .iter()
        .rev()
        .zip(b.get(prefix..).unwrap_or_default().iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (a.len() - prefix - suffix, b.len() - prefix - suffix);
    let mut ops: Vec<Op> = (0..prefix).map(|i| Op::Keep(i, i)).collect();
    if am.saturating_mul(bm) > MAX_CELLS {
        ops.extend((prefix..prefix + am).map(Op::Del));
        ops.extend((prefix..prefix + bm).map(Op::Add));
    } else {
        // lcs[i][j] = LCS length of a[prefix+i..] and b[prefix+j..] (middle only).
        let w = bm + 1;
        let mut lcs = vec![0u32; (am + 1) * w];
        for i in (0..am).rev() {
            for j in (0..bm).rev() {
                let v = if a.get(prefix + i) == b.get(prefix + j) {
                    lcs.get((i + 1) * w + j + 1).copied().unwrap_or(0) + 1
                } else {
                    lcs.get((i + 1) * w + j)
                        .copied()
                        .unwrap_or(0)
                        .max(lcs.get(i * w + j + 1).copied().unwrap_or(0))
                };
                if let Some(cell) = lcs.get_mut(i * w + j) {
                    *cell = v;
                }
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < am || j < bm {
            let at = |x: usize, y: usize| lcs.get(x * w + y).copied().unwrap_or(0);
            if i < am && j < bm && a.get(prefix + i) == b.get(prefix + j) {
                ops.push(Op::Keep(prefix + i, prefix + j));
                i += 1;
                j += 1;
            } else if i < am && (j == bm || at(i + 1, j) >= at(i, j + 1)) {
                ops.push(Op::Del(prefix + i));
                i += 1;
            } else {
                ops.push(Op::Add(prefix + j));
                j += 1;
            }
        }
    }
    ops.extend((0..suffix).map(|k| Op::Keep(prefix + am + k, prefix + bm + k)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_changed_line_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\n";
        assert_eq!(
            unified(old, new, "x", "y", 3),
            "--- x\n+++ y\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n"
        );
    }

    #[test]
    fn new_file_and_missing_newline() {
        assert_eq!(
            unified("", "a\nb\n", "/dev/null", "f", 3),
            "--- /dev/null\n+++ f\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
        assert_eq!(
            unified("a", "a,b", "f", "f", 3),
            "--- f\n+++ f\n@@ -1,1 +1,1 @@\n-a\n\\ No newline at end of file\n+a,b\n\\ No newline at end of file\n"
        );
        assert_eq!(unified("same", "same", "f", "f", 3), "");
    }

    #[test]
    fn distant_changes_make_two_hunks() {
        let old: String = (0..20).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l2\n", "two\n").replace("l17\n", "seventeen\n");
        let d = unified(&old, &new, "a", "b", 1);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(d.contains("@@ -2,3 +2,3 @@\n l1\n-l2\n+two\n l3\n"), "{d}");
    }
}
