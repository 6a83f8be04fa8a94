//! The one socket option the client sets that neither the standard library
//! nor tokio offers, hence the only unsafe code in the crate.
#![allow(unsafe_code)]

/// Asks Linux to choose the local port at connect() rather than at bind()
/// (`IP_BIND_ADDRESS_NO_PORT`). A load generator binds tens of thousands of
/// sockets to a few source addresses; choosing the port at bind() means
/// searching for one not used with *any* peer, which grows slow when earlier
/// runs left many ports in TIME_WAIT (measured: 10,000 logins stalled for
/// 15-20 s with the generator's cores busy in the kernel), while connect()
/// only needs the full address pair to be unique.
#[cfg(target_os = "linux")]
pub fn bind_port_at_connect(socket: &tokio::net::TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is open for as long as `socket` is borrowed, and
    // the option value is a valid c_int whose size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn bind_port_at_connect(_socket: &tokio::net::TcpSocket) -> std::io::Result<()> {
    Ok(())
}
