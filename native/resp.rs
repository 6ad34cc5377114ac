//! Redis protocol (RESP) framing for the arguments the writer sends.

/// Command arguments already framed as RESP bulk strings, and how many there are.
#[derive(Debug, Default)]
pub struct Args {
    pub buf: Vec<u8>,
    pub count: usize,
}

impl Args {
    /// One argument made of several parts (e.g. `t:` and a number), framed once.
    pub fn push_parts(&mut self, parts: &[&[u8]]) {
        let length: usize = parts.iter().map(|part| part.len()).sum();
        self.head(length);
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        self.buf.extend_from_slice(b"\r\n");
        self.count += 1;
    }

    pub fn push(&mut self, data: &[u8]) {
        self.push_parts(&[data]);
    }

    /// `prefix` followed by a decimal number, e.g. `t:491087`.
    pub fn push_number(&mut self, prefix: &[u8], number: i64) {
        let mut digits = itoa::Buffer::new();
        self.push_parts(&[prefix, digits.format(number).as_bytes()]);
    }

    fn head(&mut self, length: usize) {
        let mut digits = itoa::Buffer::new();
        self.buf.push(b'$');
        self.buf.extend_from_slice(digits.format(length).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// The arguments back as byte strings (for clients that send commands themselves).
    pub fn split(&self) -> Vec<&[u8]> {
        let mut out = Vec::with_capacity(self.count);
        let mut at = 0;
        while at < self.buf.len() {
            let line_end = at + self.buf[at..].iter().position(|&b| b == b'\r').expect("framed by push");
            let length: usize =
                std::str::from_utf8(&self.buf[at + 1..line_end]).expect("digits").parse().expect("digits");
            let start = line_end + 2;
            out.push(&self.buf[start..start + length]);
            at = start + length + 2;
        }
        out
    }
}

/// One command in RESP: `*<n>` then the head arguments, then `tail` (already framed, `tail_count`
/// arguments).
pub fn pack_command(out: &mut Vec<u8>, head: &[&[u8]], tail: &Args) {
    let mut digits = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(digits.format(head.len() + tail.count).as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut framed = Args { buf: std::mem::take(out), count: 0 };
    for part in head {
        framed.push(part);
    }
    *out = framed.buf;
    out.extend_from_slice(&tail.buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_splits() {
        let mut args = Args::default();
        args.push(b"abc");
        args.push_number(b"t:", -12);
        args.push(b"");
        assert_eq!(args.buf, b"$3\r\nabc\r\n$5\r\nt:-12\r\n$0\r\n\r\n");
        assert_eq!(args.split(), vec![b"abc".as_slice(), b"t:-12", b""]);
        let mut out = Vec::new();
        pack_command(&mut out, &[b"HSET"], &args);
        assert_eq!(out, b"*4\r\n$4\r\nHSET\r\n$3\r\nabc\r\n$5\r\nt:-12\r\n$0\r\n\r\n");
    }
}
