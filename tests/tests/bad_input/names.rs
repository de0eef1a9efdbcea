//! File names a producer may choose: spaces, newlines, non-UTF-8, a leading
//! `-`, `%`, 255 bytes, reserved `~sp.` suffixes, dot-names.
