//! Files that change, vanish or are not regular while the programs work on
//! them: deleted, truncated or grown while sent, sockets, FIFOs, symlinks.
