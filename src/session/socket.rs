//! The TCP socket under a WebSocket session, for the end of the closing handshake.
//!
//! RFC 6455 §7.1.1 wants the server to close the TCP connection first once both close frames
//! are exchanged; clients (browsers included) wait for that before they report the socket
//! closed. actix-http ends a WebSocket response while the request side is still open, and then
//! *lingers*: it reads on until the client closes or `client_disconnect_timeout` (1 s) passes.
//! Client and server would each wait for the other for that second. Shutting the socket down
//! for reading ends the linger at once: the dispatcher sees end-of-input, flushes what the
//! session wrote (the close frame) and shuts the connection down.

use std::any::Any;

use actix_web::dev::Extensions;

/// The socket of one HTTP connection, remembered in the connection's extensions by
/// [`remember_socket`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSocket {
    #[cfg(unix)]
    fd: std::os::fd::RawFd,
}

/// `HttpServer::on_connect` callback: remembers the socket of every plain TCP connection.
pub fn remember_socket(connection: &dyn Any, extensions: &mut Extensions) {
    #[cfg(unix)]
    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        use std::os::fd::AsRawFd;
        extensions.insert(ConnectionSocket {
            fd: tcp.as_raw_fd(),
        });
    }
    #[cfg(not(unix))]
    let _ = (connection, extensions);
}

impl ConnectionSocket {
    /// Ends reading on the connection so the HTTP dispatcher closes it as soon as the session's
    /// response (its last frame) is written, instead of lingering.
    ///
    /// Call it only from the session actor while it handles a message or stream item: the
    /// actor runs inside the response body that the connection's dispatcher polls, and that
    /// dispatcher owns the socket, so the descriptor is this connection's for as long as the
    /// session runs.
    pub fn finish_reading(&self) {
        #[cfg(unix)]
        {
            // SAFETY: `shutdown` only takes a descriptor number; the descriptor is the open
            // socket of this session's connection (see above). Shutting down the read half
            // leaves queued output alone, so the close frame is still sent.
            let rc = unsafe { libc::shutdown(self.fd, libc::SHUT_RD) };
            if rc != 0 {
                log::debug!(
                    "cannot shut down reading on a closed session's socket: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}
