//! The messages and server stubs generated from `proto/` at build time. Modules nest like the
//! proto packages, because the generated code names other packages by relative paths.
#![allow(clippy::all, missing_docs)]

/// The encoded FileDescriptorSet of every file in `proto/` and its imports (server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rekor_descriptor.bin"));

pub mod dev {
    pub mod sigstore {
        pub mod rekor {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/dev.sigstore.rekor.v1.rs"));
            }
            pub mod v2 {
                include!(concat!(env!("OUT_DIR"), "/dev.sigstore.rekor.v2.rs"));
            }
        }
        pub mod common {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/dev.sigstore.common.v1.rs"));
            }
        }
    }
}

pub mod io {
    pub mod intoto {
        include!(concat!(env!("OUT_DIR"), "/io.intoto.rs"));
    }
}

pub mod google {
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}
