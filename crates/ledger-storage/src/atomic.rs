//! [`AtomicFile`]: a file that appears complete and durable under its name, or not at all.

use std::io;
use std::path::{Path, PathBuf};

use crate::{OpenMode, Storage, StorageFile};

/// A file being created under a temporary name. [`AtomicFile::create`] returns it with
/// the open file; [`AtomicFile::commit`] makes the file durable (`fsync`), renames it into
/// place and syncs the directory. Dropped uncommitted, it deletes the temporary file (best
/// effort: the layers also delete leftovers when they open a directory).
#[derive(Debug)]
#[must_use = "dropping it deletes the file: commit it"]
pub struct AtomicFile<'s> {
    storage: &'s dyn Storage,
    dir: PathBuf,
    temp: PathBuf,
    target: PathBuf,
    done: bool,
}

/// A failed step of an [`AtomicFile`]: the path it concerned, and the error.
pub type PathError = (PathBuf, io::Error);

impl<'s> AtomicFile<'s> {
    /// Creates (or empties) `dir/temp_name`, to become `dir/name`, and opens it for
    /// reading and writing.
    ///
    /// # Errors
    /// The failed create, with the temporary path.
    pub fn create(
        storage: &'s dyn Storage,
        dir: &Path,
        temp_name: &str,
        name: &str,
    ) -> Result<(Self, Box<dyn StorageFile>), PathError> {
        let temp = dir.join(temp_name);
        let file = storage
            .open(&temp, OpenMode::CreateTruncate)
            .map_err(|e| (temp.clone(), e))?;
        let atomic = AtomicFile {
            storage,
            dir: dir.to_path_buf(),
            temp,
            target: dir.join(name),
            done: false,
        };
        Ok((atomic, file))
    }

    /// The temporary path.
    #[must_use]
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The final path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// `fsync`s `file` (the one [`AtomicFile::create`] returned), renames it to its name
    /// and `fsync`s the directory.
    ///
    /// # Errors
    /// The failed step, with the path it concerned. The temporary file is deleted (best
    /// effort) unless the rename already happened.
    pub fn commit(mut self, file: &dyn StorageFile) -> Result<(), PathError> {
        file.sync_all().map_err(|e| (self.temp.clone(), e))?;
        self.storage
            .rename(&self.temp, &self.target)
            .map_err(|e| (self.target.clone(), e))?;
        self.done = true;
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| (self.dir.clone(), e))
    }
}

impl Drop for AtomicFile<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: a leftover temporary file is never read and is deleted on open.
            let _ = self.storage.remove_file(&self.temp);
        }
    }
}
