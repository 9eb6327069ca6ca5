//! Test helper: reads one HTTP/1.1 request (headers and a `content-length` body) from a socket.

use tokio::io::AsyncReadExt;

/// The raw request text, or what arrived before the peer closed.
pub async fn read_request(sock: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0;
    while let Ok(m) = sock.read(&mut buf[n..]).await {
        n += m;
        let text = String::from_utf8_lossy(&buf[..n]);
        if let Some(end) = text.find("\r\n\r\n") {
            let len =
                text.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse::<usize>().unwrap_or(0))).unwrap_or(0);
            if n >= end + 4 + len {
                break;
            }
        }
        if m == 0 || n == buf.len() {
            break;
        }
    }
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
