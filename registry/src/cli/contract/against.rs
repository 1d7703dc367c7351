//! `--against REV`: the earlier version of each document, read from git.
//!
//! Each file's repository is found with `git rev-parse --show-toplevel` from
//! the file's folder, the revision is resolved once per repository with
//! `git rev-parse --verify REV^{commit}`, and the files at that commit are
//! read through one `git cat-file --batch` per repository, so checking a
//! thousand documents starts a handful of processes, not a thousand.
//!
//! Every git failure is a [`UsageError`] (exit 2): an unknown revision, a
//! path outside any repository, git missing. A file that does not exist at
//! the revision is not a failure: it is a new document.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cli::UsageError;

/// One file as it was at the revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileAtRevision {
    /// The path relative to the repository root, with `/` separators (as git
    /// and CI annotations spell it).
    pub(crate) repo_path: String,
    /// The file's bytes at the revision; `None` when it did not exist there.
    pub(crate) content: Option<Vec<u8>>,
}

/// A file that existed at the revision under a folder being checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedFile {
    /// The path relative to the repository root.
    pub(crate) repo_path: String,
    /// The path relative to the folder it was found under.
    pub(crate) under_folder: String,
    /// Its bytes at the revision.
    pub(crate) content: Vec<u8>,
}

/// A git revision, resolved in each repository the checked files live in.
#[derive(Debug)]
pub(crate) struct GitRevision {
    name: String,
    /// Repository root of each folder looked up so far.
    roots: HashMap<PathBuf, PathBuf>,
    /// The commit the revision names, in each repository.
    commits: HashMap<PathBuf, String>,
}

impl GitRevision {
    /// A revision named `name` (`origin/main`, a tag, a commit id).
    pub(crate) fn new(name: &str) -> Result<Self, UsageError> {
        // A leading dash would be read by git as an option.
        if name.is_empty() || name.starts_with('-') || name.contains(['\n', '\0']) {
            return Err(UsageError(format!("{name:?} is not a git revision")));
        }
        if ["http://", "https://"].iter().any(|scheme| name.starts_with(scheme)) {
            return Err(UsageError(format!(
                "--against {name}: comparing with the registry's HTTP API is not supported; give its NATS URL \
                 (nats://HOST:PORT) or a git revision such as origin/main"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            roots: HashMap::new(),
            commits: HashMap::new(),
        })
    }

    /// The revision as given.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Reads each of `files` (existing paths) as it was at the revision.
    pub(crate) fn read_files(&mut self, files: &[PathBuf]) -> Result<Vec<FileAtRevision>, UsageError> {
        // Files are batched per repository and put back in their order.
        let mut per_repository: BTreeMap<PathBuf, Vec<(usize, String)>> = BTreeMap::new();
        for (index, file) in files.iter().enumerate() {
            let (root, repo_path) = self.locate(file)?;
            per_repository.entry(root).or_default().push((index, repo_path));
        }
        let mut found: Vec<Option<FileAtRevision>> = vec![None; files.len()];
        for (root, entries) in per_repository {
            let commit = self.commit(&root)?;
            let paths: Vec<&str> = entries.iter().map(|(_, repo_path)| repo_path.as_str()).collect();
            let contents = cat_files(&root, &commit, &paths)?;
            for ((index, repo_path), content) in entries.into_iter().zip(contents) {
                found[index] = Some(FileAtRevision { repo_path, content });
            }
        }
        Ok(found.into_iter().flatten().collect())
    }

    /// Every `*.json` file that was under the folder `dir` at the revision
    /// and is no longer in the working tree, with its bytes: a document that
    /// has gone since.
    pub(crate) fn gone_json_files_under(&mut self, dir: &Path) -> Result<Vec<ListedFile>, UsageError> {
        let (root, repo_dir) = self.locate(dir)?;
        let commit = self.commit(&root)?;
        let mut command = git(&root);
        command.args(["ls-tree", "-r", "-z", "--name-only", &commit]);
        if !repo_dir.is_empty() {
            command.args(["--", &repo_dir]);
        }
        let listing = run(
            command,
            &format!("list the files of {} at {}", dir.display(), self.name),
        )?;
        let prefix = if repo_dir.is_empty() {
            String::new()
        } else {
            format!("{repo_dir}/")
        };
        let gone: Vec<(String, String)> = listing
            .split(|&byte| byte == 0)
            .filter_map(|name| std::str::from_utf8(name).ok())
            .filter(|name| name.ends_with(".json") && !name.contains('\n'))
            .filter(|name| !root.join(name).exists())
            .filter_map(|name| Some((name.to_owned(), name.strip_prefix(&prefix)?.to_owned())))
            .collect();
        let names: Vec<&str> = gone.iter().map(|(repo_path, _)| repo_path.as_str()).collect();
        let contents = cat_files(&root, &commit, &names)?;
        Ok(gone
            .into_iter()
            .zip(contents)
            .filter_map(|((repo_path, under_folder), content)| {
                Some(ListedFile {
                    repo_path,
                    under_folder,
                    content: content?,
                })
            })
            .collect())
    }

    /// The repository root of `path` and the path relative to it.
    fn locate(&mut self, path: &Path) -> Result<(PathBuf, String), UsageError> {
        let absolute = path
            .canonicalize()
            .map_err(|error| UsageError(format!("cannot read {}: {error}", path.display())))?;
        let folder = if absolute.is_dir() {
            absolute.clone()
        } else {
            absolute.parent().map_or_else(|| absolute.clone(), Path::to_owned)
        };
        let root = match self.roots.get(&folder) {
            Some(root) => root.clone(),
            None => {
                let root = repository_root(&folder, path)?;
                self.roots.insert(folder, root.clone());
                root
            }
        };
        let relative = absolute.strip_prefix(&root).map_err(|_| {
            UsageError(format!(
                "{} is outside its git repository at {}",
                path.display(),
                root.display()
            ))
        })?;
        Ok((root, slash_path(relative, path)?))
    }

    /// The commit the revision names in the repository at `root`.
    fn commit(&mut self, root: &Path) -> Result<String, UsageError> {
        if let Some(commit) = self.commits.get(root) {
            return Ok(commit.clone());
        }
        let mut command = git(root);
        command.args(["rev-parse", "--verify", "--quiet", &format!("{}^{{commit}}", self.name)]);
        let output = command.output().map_err(git_missing)?;
        if !output.status.success() {
            return Err(UsageError(format!(
                "unknown git revision {:?} in the repository at {}: no commit has that name (in a shallow CI checkout, fetch it first, e.g. `git fetch origin main`, or check out with full history)",
                self.name,
                root.display()
            )));
        }
        let commit = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        self.commits.insert(root.to_owned(), commit.clone());
        Ok(commit)
    }
}

/// A `git -C root` command that ignores the user's pager and terminal prompts.
fn git(root: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(root)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat")
        .stdin(Stdio::null());
    command
}

fn git_missing(error: std::io::Error) -> UsageError {
    UsageError(format!("--against needs git, which could not be run: {error}"))
}

/// Runs `command` and returns its standard output, or a usage error saying
/// what could not be done and what git said.
fn run(mut command: Command, what: &str) -> Result<Vec<u8>, UsageError> {
    let output = command.output().map_err(git_missing)?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(UsageError(format!(
            "could not {what}: git said: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The root of the git repository holding `folder`.
fn repository_root(folder: &Path, given: &Path) -> Result<PathBuf, UsageError> {
    let output = git(folder)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .map_err(git_missing)?;
    if !output.status.success() {
        return Err(UsageError(format!(
            "{} is not in a git repository, so --against has nothing to compare with",
            given.display()
        )));
    }
    let root = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim_end_matches(['\n', '\r']));
    // Compared with canonical file paths, so canonical too (a temp folder may be a symlink).
    root.canonicalize()
        .map_err(|error| UsageError(format!("cannot read the git repository at {}: {error}", root.display())))
}

/// `relative` with `/` separators, as git names paths.
fn slash_path(relative: &Path, given: &Path) -> Result<String, UsageError> {
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(|| {
                UsageError(format!(
                    "{} has a name that is not UTF-8, which git cannot be asked for",
                    given.display()
                ))
            })?),
            _ => {
                return Err(UsageError(format!(
                    "{} does not resolve to a path inside its repository",
                    given.display()
                )));
            }
        }
    }
    let joined = parts.join("/");
    if joined.contains('\n') {
        return Err(UsageError(format!(
            "{} has a line break in its name, which git cannot be asked for",
            given.display()
        )));
    }
    Ok(joined)
}

/// The bytes of each of `paths` (relative to `root`) at `commit`, `None`
/// where the commit has no such file, through one `git cat-file --batch`.
fn cat_files(root: &Path, commit: &str, paths: &[&str]) -> Result<Vec<Option<Vec<u8>>>, UsageError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let broken = |detail: String| UsageError(format!("could not read files from git in {}: {detail}", root.display()));
    let mut child = git(root)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(git_missing)?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(broken("git's input or output is not connected".to_owned()));
    };
    let requests: String = paths.iter().map(|path| format!("{commit}:{path}\n")).collect();
    let contents = std::thread::scope(|scope| {
        // Written from another thread: git answers while it reads, and a
        // full output pipe would otherwise stop both sides.
        let writer = scope.spawn(move || stdin.write_all(requests.as_bytes()));
        let mut reader = BufReader::new(stdout);
        let contents: Result<Vec<Option<Vec<u8>>>, String> =
            paths.iter().map(|path| read_batch_entry(&mut reader, path)).collect();
        // Whatever git did not read any more, the reader's error says why.
        let _ = writer.join();
        contents
    });
    let output = child.wait_with_output().map_err(|error| broken(error.to_string()))?;
    match contents {
        Ok(contents) if output.status.success() => Ok(contents),
        Ok(_) => Err(broken(format!(
            "git cat-file failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
        Err(detail) => Err(broken(format!(
            "{detail} {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
    }
}

/// Reads one answer of `git cat-file --batch`: `<oid> <type> <size>\n<bytes>\n`,
/// or `<request> missing\n`.
fn read_batch_entry(reader: &mut impl BufRead, path: &str) -> Result<Option<Vec<u8>>, String> {
    let mut header = String::new();
    let read = reader.read_line(&mut header).map_err(|error| error.to_string())?;
    if read == 0 {
        return Err(format!("git stopped answering before {path}."));
    }
    let header = header.trim_end_matches('\n');
    let fields: Vec<&str> = header.split(' ').collect();
    if let [oid, kind, size] = fields.as_slice()
        && oid.bytes().all(|byte| byte.is_ascii_hexdigit())
        && let Ok(size) = size.parse::<usize>()
    {
        // The size is git's own answer about one file, not input of ours.
        let mut content = vec![0; size];
        reader.read_exact(&mut content).map_err(|error| error.to_string())?;
        let mut newline = [0u8; 1];
        reader.read_exact(&mut newline).map_err(|error| error.to_string())?;
        // A folder where the file is now is no earlier version of it.
        return Ok((*kind == "blob").then_some(content));
    }
    if header.ends_with(" missing") || header.ends_with(" ambiguous") {
        return Ok(None);
    }
    Err(format!("unexpected answer {header:?} for {path}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_that_git_would_read_as_options_are_refused() {
        assert!(GitRevision::new("--output=/tmp/x").is_err());
        assert!(GitRevision::new("").is_err());
        assert!(
            GitRevision::new("https://registry.example.com")
                .unwrap_err()
                .0
                .contains("give its NATS URL")
        );
        assert!(GitRevision::new("origin/main").is_ok());
    }

    #[test]
    fn batch_answers_are_read_in_order() {
        let answer = b"0123abcd blob 5\nhello\nHEAD:gone.json missing\n0123abcd tree 3\nabc\n";
        let mut reader = BufReader::new(&answer[..]);
        assert_eq!(
            read_batch_entry(&mut reader, "a.json").unwrap(),
            Some(b"hello".to_vec())
        );
        assert_eq!(read_batch_entry(&mut reader, "gone.json").unwrap(), None);
        assert_eq!(read_batch_entry(&mut reader, "dir").unwrap(), None);
        assert!(read_batch_entry(&mut reader, "more.json").is_err());
    }
}
