//! The real file system behind the interface.

use std::io::{ErrorKind, IoSlice};

use ledger_storage::{AtomicFile, OpenMode, read_full_at, real, write_all_at};

#[test]
fn files_directories_and_locks_on_the_real_file_system() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = real();
    let dir = tmp.path().join("a/b");
    storage.create_dir_all(&dir).expect("mkdir");
    let path = dir.join("f");
    let file = storage
        .open(&path, OpenMode::CreateTruncate)
        .expect("create");
    write_all_at(
        file.as_ref(),
        0,
        &mut [IoSlice::new(b"hello "), IoSlice::new(b"world")],
    )
    .expect("write");
    file.sync_data().expect("sync");
    file.start_writeback(0, 11).expect("writeback hint");
    file.drop_cache().expect("drop cache");
    assert_eq!(file.size().expect("len"), 11);
    let mut buf = [0; 32];
    assert_eq!(read_full_at(file.as_ref(), &mut buf, 6).expect("read"), 5);
    assert_eq!(&buf[..5], b"world");
    assert_eq!(&*storage.map(&path).expect("map"), b"hello world");
    file.set_len(5).expect("truncate");
    assert_eq!(&*storage.map(&path).expect("map"), b"hello");

    storage.rename(&path, &dir.join("g")).expect("rename");
    storage.sync_dir(&dir).expect("sync dir");
    assert_eq!(storage.list(&dir).expect("list"), vec!["g".to_owned()]);
    storage.remove_file(&dir.join("g")).expect("unlink");
    assert!(storage.list(&dir).expect("list").is_empty());
    let missing = storage.list(&tmp.path().join("none")).expect_err("no dir");
    assert_eq!(missing.kind(), ErrorKind::NotFound);

    let lock = storage.lock(&dir.join("lock")).expect("lock");
    let held = storage.lock(&dir.join("lock")).expect_err("held");
    assert_eq!(held.kind(), ErrorKind::WouldBlock);
    drop(lock);
    storage.lock(&dir.join("lock")).expect("released");
}

#[test]
fn an_atomic_file_appears_whole_or_not_at_all() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = real();
    let (atomic, file) =
        AtomicFile::create(storage.as_ref(), tmp.path(), "x.tmp", "x").expect("create");
    write_all_at(file.as_ref(), 0, &mut [IoSlice::new(b"done")]).expect("write");
    assert_eq!(
        storage.list(tmp.path()).expect("list"),
        vec!["x.tmp".to_owned()]
    );
    atomic.commit(file.as_ref()).expect("commit");
    assert_eq!(file.size().expect("len"), 4);
    assert_eq!(
        storage.list(tmp.path()).expect("list"),
        vec!["x".to_owned()]
    );

    let abandoned = AtomicFile::create(storage.as_ref(), tmp.path(), "y.tmp", "y").expect("c");
    drop(abandoned);
    assert_eq!(
        storage.list(tmp.path()).expect("list"),
        vec!["x".to_owned()]
    );
}
