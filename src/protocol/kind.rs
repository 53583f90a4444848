//! The storage and arithmetic commands every protocol names: classic,
//! meta and binary requests all carry a [`StoreKind`] or an [`ArithKind`].
//! A leaf, so the meta and binary vocabularies need not import the text
//! parser's.

/// The five plain storage commands and `cas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// `set`
    Set,
    /// `add`
    Add,
    /// `replace`
    Replace,
    /// `append`
    Append,
    /// `prepend`
    Prepend,
    /// `cas`
    Cas,
}

/// `incr` or `decr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithKind {
    /// `incr`
    Incr,
    /// `decr`
    Decr,
}
