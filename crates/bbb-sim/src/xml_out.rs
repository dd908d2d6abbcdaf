//! Writes BBB-shaped XML replies. Hand-rolled (a few elements, always escaped) so the sim's
//! output is byte-for-byte predictable for tests.

/// An XML document under construction.
#[derive(Default)]
pub(crate) struct XmlOut(String);

/// Escapes text content and attribute values (`<`, `>`, `&`, `'`, `"`).
pub(crate) fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

impl XmlOut {
    /// Starts `<response><returncode>CODE</returncode>`.
    pub fn response(code: &str) -> Self {
        let mut x = Self::default();
        x.open("response");
        x.el("returncode", code);
        x
    }

    pub fn open(&mut self, name: &str) -> &mut Self {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
        self
    }

    pub fn close(&mut self, name: &str) -> &mut Self {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
        self
    }

    /// `<name>escaped text</name>`
    pub fn el(&mut self, name: &str, text: impl AsRef<str>) -> &mut Self {
        self.open(name);
        self.0.push_str(&escape(text.as_ref()));
        self.close(name)
    }

    /// `<name/>`
    pub fn empty(&mut self, name: &str) -> &mut Self {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push_str("/>");
        self
    }

    /// Closes `<response>` and returns the document.
    pub fn finish(mut self) -> String {
        self.close("response");
        self.0
    }
}

/// A complete FAILED reply.
pub(crate) fn failed(key: &str, message: &str) -> String {
    let mut x = XmlOut::response("FAILED");
    x.el("messageKey", key).el("message", message);
    x.finish()
}
