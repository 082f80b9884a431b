//! Reading a server-sent event stream (the web console's `/console/live`) as a client does.

/// One event: its name (`message` when unnamed) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEvent {
    /// The `event:` field.
    pub name: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// The events of a `text/event-stream` response, in order; comments (keep-alives) skipped.
#[derive(Debug)]
pub struct ServerEvents {
    response: reqwest::Response,
    buffer: String,
}

impl ServerEvents {
    /// Reads the events of `response`.
    pub fn new(response: reqwest::Response) -> Self {
        ServerEvents {
            response,
            buffer: String::new(),
        }
    }

    /// The next event; `None` when the server ended the stream (or it broke).
    pub async fn next(&mut self) -> Option<ServerEvent> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = ServerEvent {
                    name: "message".into(),
                    data: String::new(),
                };
                let mut has_data = false;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => event.name = value.to_owned(),
                        "data" => {
                            if has_data {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                            has_data = true;
                        }
                        _ => {}
                    }
                }
                if has_data {
                    return Some(event);
                }
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(_) => return None,
            }
        }
    }
}
