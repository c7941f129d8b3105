//! File formats: bytes in, the containers of this crate out. Every error names the file, and the
//! line or record where there is one.

pub(crate) mod csv_table;
pub(crate) mod digits_csv;
pub(crate) mod gzip;
pub(crate) mod idx;
pub(crate) mod plain_text;
pub(crate) mod ts;
