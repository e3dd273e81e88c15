//! A small XML writer that escapes every text and attribute value, and helpers to read libvirt's XML back.
//!
//! Element and attribute names come only from this crate's code (`&'static str`); values from configurations
//! are always escaped, so a value can never open or close an element.

use std::fmt::Write as _;

/// Escapes text for use in XML content or a quoted attribute value.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Writes indented XML.
#[derive(Debug, Default)]
pub struct XmlWriter {
    out: String,
    open: Vec<&'static str>,
}

impl XmlWriter {
    /// An empty document.
    pub fn new() -> XmlWriter {
        XmlWriter::default()
    }

    fn indent(&mut self) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    fn start_tag(&mut self, tag: &'static str, attrs: &[(&'static str, &str)]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(tag);
        for (k, v) in attrs {
            let _ = write!(self.out, " {k}='{}'", escape(v));
        }
    }

    /// Opens an element; close it with [`XmlWriter::close`].
    pub fn open(&mut self, tag: &'static str, attrs: &[(&'static str, &str)]) -> &mut Self {
        self.start_tag(tag, attrs);
        self.out.push_str(">\n");
        self.open.push(tag);
        self
    }

    /// Writes an element with no content.
    pub fn empty(&mut self, tag: &'static str, attrs: &[(&'static str, &str)]) -> &mut Self {
        self.start_tag(tag, attrs);
        self.out.push_str("/>\n");
        self
    }

    /// Writes an element holding text.
    pub fn text(
        &mut self,
        tag: &'static str,
        attrs: &[(&'static str, &str)],
        text: &str,
    ) -> &mut Self {
        self.start_tag(tag, attrs);
        let _ = writeln!(self.out, ">{}</{tag}>", escape(text));
        self
    }

    /// Closes the innermost open element.
    pub fn close(&mut self) -> &mut Self {
        if let Some(tag) = self.open.pop() {
            self.indent();
            let _ = writeln!(self.out, "</{tag}>");
        }
        self
    }

    /// The document, with every open element closed.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

/// Reading helpers over `roxmltree`.
pub mod read {
    use roxmltree::Node;

    /// The first child element called `tag`.
    pub fn child<'a, 'i>(node: Node<'a, 'i>, tag: &str) -> Option<Node<'a, 'i>> {
        node.children()
            .find(|n| n.is_element() && n.has_tag_name(tag))
    }

    /// All child elements called `tag`.
    pub fn children<'a, 'i: 'a>(
        node: Node<'a, 'i>,
        tag: &'a str,
    ) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
        node.children()
            .filter(move |n| n.is_element() && n.has_tag_name(tag))
    }

    /// The text of the child element `tag`, trimmed.
    pub fn child_text(node: Node<'_, '_>, tag: &str) -> Option<String> {
        child(node, tag).map(|n| n.text().unwrap_or_default().trim().to_owned())
    }

    /// An attribute, owned.
    pub fn attr(node: Node<'_, '_>, name: &str) -> Option<String> {
        node.attribute(name).map(str::to_owned)
    }

    /// The text, trimmed, of the element `name` in namespace `ns` inside `node`'s `<metadata>` (whatever prefix
    /// libvirt gave it).
    pub fn metadata_text(node: Node<'_, '_>, ns: &str, name: &str) -> Option<String> {
        child(node, "metadata")?
            .children()
            .find(|n| {
                n.is_element()
                    && n.tag_name().namespace() == Some(ns)
                    && n.tag_name().name() == name
            })
            .map(|n| n.text().unwrap_or_default().trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let mut w = XmlWriter::new();
        w.open("network", &[]);
        w.text("name", &[], "a</name><evil/>");
        w.empty("bridge", &[("name", "x' onload='y")]);
        let xml = w.finish();
        assert_eq!(
            xml,
            "<network>\n  <name>a&lt;/name&gt;&lt;evil/&gt;</name>\n  <bridge name='x&apos; onload=&apos;y'/>\n</network>\n"
        );
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(read::child_text(root, "name").unwrap(), "a</name><evil/>");
        assert_eq!(
            read::child(root, "bridge").unwrap().attribute("name"),
            Some("x' onload='y")
        );
        assert_eq!(root.children().filter(|n| n.is_element()).count(), 2);
    }
}
