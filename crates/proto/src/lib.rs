//! The natter wire protocol: frame layout, the protobuf payloads, and the
//! mapping from frame type numbers to payloads. No I/O happens here; the
//! gateway and the client feed bytes in and take bytes out.
#![forbid(unsafe_code)]

mod frame;
mod messages;

pub use frame::{encode_frame, Frame, FrameDecoder, FrameError, HEADER_LEN, LENGTH_LEN};
pub use messages::{ClientFrame, DecodeError, ServerFrame};

/// The protobuf payloads, generated from `proto/natter.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/natter.v1.rs"));
}

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The oldest protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
