//! `plexgate users add`: an Argon2id hash on disk, never the password.

use plexgate_tests::Workspace;

#[test]
fn stores_an_argon2id_hash_and_the_admin_flag_never_the_password() {
    let ws = Workspace::new();
    let run = ws.run(&["users", "add", "alice", "--admin"], "correct horse battery\n").expect_code(0);
    assert!(run.stdout().contains("added user alice (admin)"), "{}", run.stdout());
    ws.run(&["users", "add", "bob"], "hunter2-hunter2\n").expect_code(0);
    let path = ws.path().join("workspace/users.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("correct horse") && !text.contains("hunter2"), "{text}");
    let file = plexgate_config::users::UsersFile::read(&path).unwrap();
    let alice = file.find("alice").unwrap();
    assert!(alice.admin);
    assert!(alice.hash.starts_with("$argon2id$"), "{}", alice.hash);
    assert!(!file.find("bob").unwrap().admin);
    // Replacing a password keeps one entry.
    let run = ws.run(&["users", "add", "ALICE"], "another one\n").expect_code(0);
    assert!(run.stdout().contains("updated user ALICE"));
    assert_eq!(plexgate_config::users::UsersFile::read(&path).unwrap().users.len(), 2);
}

#[test]
fn empty_passwords_and_bad_names_are_refused_without_writing() {
    let ws = Workspace::new();
    let run = ws.run(&["users", "add", "carol"], "\n").expect_code(1);
    assert!(run.stderr().contains("password is empty"), "{}", run.stderr());
    let run = ws.run(&["users", "add", "bad name"], "pw\n").expect_code(1);
    assert!(run.stderr().contains("user name"), "{}", run.stderr());
    assert!(!ws.path().join("workspace/users.yaml").exists());
}
