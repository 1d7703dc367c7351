//! The contract gate end to end, as snapshots of what `soa` prints: `soa
//! contract check` in every output format, alone and `--against` a revision
//! of a temporary git repository; `soa contract diff` of documents and of
//! bare schemas; the ignore file; and every kind of unreadable input, each
//! one clear error and exit 2.
//!
//! Outputs are made deterministic by running on files in a temporary folder
//! whose path is replaced by `$DIR`. Git runs with its own identity and no
//! signing, so the machine's git configuration does not matter. Update the
//! snapshots with `UPDATE_EXPECT=1 cargo test -p tests --test e2e contract_gate`.

use std::path::PathBuf;
use std::process::Command;

use expect_test::{Expect, expect};
use registry::cli::Exit;
use serde_json::{Value, json};

use crate::cli::{Run, soa};

/// A temporary folder for documents, a git repository once [`Workspace::init_git`] ran.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn write_json(&self, relative: &str, value: &Value) {
        self.write(relative, &format!("{}\n", serde_json::to_string_pretty(value).unwrap()));
    }

    /// Runs git in the folder, independent of the machine's configuration.
    fn git(&self, args: &[&str]) {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn init_git(&self) {
        self.git(&["init", "-q", "-b", "main"]);
    }

    fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
    }

    /// Runs `soa` with `args`, where `$DIR/` stands for the folder, and
    /// returns the exit code and output with the folder's path as `$DIR`.
    async fn soa(&self, args: &[&str]) -> (Exit, String) {
        let dir = self.dir.path().display().to_string();
        let args: Vec<String> = args.iter().map(|arg| arg.replace("$DIR", &dir)).collect();
        let run = soa(&args).await;
        (run.exit, self.normalize(&run))
    }

    /// Runs `soa` and compares what it did with a snapshot.
    async fn check(&self, args: &[&str], expected: Expect) {
        let (_, output) = self.soa(args).await;
        expected.assert_eq(&output);
    }

    fn normalize(&self, run: &Run) -> String {
        let mut text = format!("exit {}\n", run.exit.code());
        if !run.stdout.is_empty() {
            text.push_str(&format!("--- stdout\n{}", run.stdout));
        }
        if !run.stderr.is_empty() {
            text.push_str(&format!("--- stderr\n{}", run.stderr));
        }
        let canonical = self.dir.path().canonicalize().unwrap();
        for dir in [canonical.as_path(), self.dir.path()] {
            text = text.replace(&dir.display().to_string(), "$DIR");
        }
        text
    }
}

/// A small contract: one operation and one event.
fn greeter() -> Value {
    json!({
        "contract": "soabus/v1",
        "service": "greeter",
        "version": "1.0.0",
        "description": "Says hello",
        "owner": "demo-team",
        "operations": {
            "greet": {
                "subject": "demo.greeter.v1.greet",
                "description": "Greet someone by name",
                "request": { "$ref": "#/$defs/Greet" },
                "response": {
                    "type": "object",
                    "properties": { "greeting": { "type": "string" } },
                    "required": ["greeting"]
                }
            }
        },
        "events": {
            "greeted": {
                "subject": "demo.greeter.v1.greeted",
                "description": "Someone was greeted",
                "payload": { "type": "object", "properties": { "name": { "type": "string" } } }
            }
        },
        "$defs": {
            "Greet": {
                "type": "object",
                "properties": { "name": { "type": "string", "maxLength": 64 } },
                "required": ["name"],
                "additionalProperties": false
            }
        }
    })
}

/// The greeter at `version`, with `edit` applied.
fn greeter_with(version: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut document = greeter();
    document["version"] = json!(version);
    edit(&mut document);
    document
}

/// A second service, to have more than one document.
fn farewell() -> Value {
    let mut document = greeter();
    document["service"] = json!("farewell");
    document["description"] = json!("Says goodbye");
    document["operations"]["greet"]["subject"] = json!("demo.farewell.v1.greet");
    document["events"]["greeted"]["subject"] = json!("demo.farewell.v1.greeted");
    document
}

/// The greeter with a lint warning (an event without description) and a
/// document with a lint error (a subject of another service).
fn documents_with_findings() -> Workspace {
    let workspace = Workspace::new();
    workspace.write_json(
        "contracts/greeter.v1.json",
        &greeter_with("1.0.0", |document| {
            document["events"]["greeted"]
                .as_object_mut()
                .unwrap()
                .remove("description");
        }),
    );
    let mut stray = farewell();
    stray["operations"]["greet"]["subject"] = json!("demo.greeter.v1.greet");
    workspace.write_json("contracts/farewell.v1.json", &stray);
    workspace
}

#[tokio::test]
async fn check_reports_findings_in_the_human_format() {
    let workspace = documents_with_findings();
    workspace
        .check(
            &["contract", "check", "$DIR/contracts"],
            expect![[r#"
                exit 1
                --- stdout
                farewell 1.0.0 ($DIR/contracts/farewell.v1.json)
                  $DIR/contracts/farewell.v1.json:50:18: error[SOA002 subject-service] at /operations/greet/subject: subject demo.greeter.v1.greet names service "greeter" but the document is "farewell"; use <domain>.farewell.v1.greet (fingerprint 1de543c3ba75c555)
                greeter 1.0.0 ($DIR/contracts/greeter.v1.json)
                  $DIR/contracts/greeter.v1.json:20:16: warning[SOA041 event-description] at /events/greeted: event greeted has no description; say what happened when it is published (fingerprint 67fde520e9ee26bf)

                2 documents, 1 error, 1 warning
                To accept a finding or change on purpose, add its fingerprint to .soa-ignore.
            "#]],
        )
        .await;
}

#[tokio::test]
async fn check_reports_findings_as_json() {
    let workspace = documents_with_findings();
    workspace
        .check(
            &[
                "contract",
                "check",
                "--format",
                "json",
                "$DIR/contracts/greeter.v1.json",
            ],
            expect![[r#"
                exit 0
                --- stdout
                {
                  "command": "check",
                  "lenient": false,
                  "documents": [
                    {
                      "path": "$DIR/contracts/greeter.v1.json",
                      "service": "greeter",
                      "version": "1.0.0",
                      "diagnostics": [
                        {
                          "level": "warning",
                          "kind": "lint",
                          "rule": "SOA041",
                          "name": "event-description",
                          "pointer": "/events/greeted",
                          "line": 20,
                          "column": 16,
                          "message": "event greeted has no description; say what happened when it is published",
                          "fingerprint": "67fde520e9ee26bf",
                          "ignored": false
                        }
                      ]
                    }
                  ],
                  "summary": {
                    "documents": 1,
                    "errors": 0,
                    "warnings": 1,
                    "notes": 0,
                    "ignored": 0,
                    "exit_code": 0
                  }
                }
            "#]],
        )
        .await;
}

#[tokio::test]
async fn check_reports_findings_as_github_annotations() {
    let workspace = documents_with_findings();
    workspace
        .check(
            &["contract", "check", "--format", "github", "$DIR/contracts"],
            expect![[r#"
                exit 1
                --- stdout
                ::error file=$DIR/contracts/farewell.v1.json,line=50,col=18,title=SOA002 subject-service::at /operations/greet/subject: subject demo.greeter.v1.greet names service "greeter" but the document is "farewell"; use <domain>.farewell.v1.greet%0Afingerprint: 1de543c3ba75c555
                ::warning file=$DIR/contracts/greeter.v1.json,line=20,col=16,title=SOA041 event-description::at /events/greeted: event greeted has no description; say what happened when it is published%0Afingerprint: 67fde520e9ee26bf
                2 documents, 1 error, 1 warning
                To accept a finding or change on purpose, add its fingerprint to .soa-ignore.
            "#]],
        )
        .await;
}

#[tokio::test]
async fn check_reports_findings_as_junit() {
    let workspace = documents_with_findings();
    workspace
        .check(
            &["contract", "check", "--format", "junit", "$DIR/contracts"],
            expect![[r#"
                exit 1
                --- stdout
                <?xml version="1.0" encoding="UTF-8"?>
                <testsuites name="soa contract check" tests="2" failures="1" errors="0" skipped="0">
                  <testsuite name="farewell 1.0.0 ($DIR/contracts/farewell.v1.json)" tests="1" failures="1" errors="0" skipped="0">
                    <testcase classname="farewell" name="contract check" file="$DIR/contracts/farewell.v1.json">
                      <failure message="subject demo.greeter.v1.greet names service &quot;greeter&quot; but the document is &quot;farewell&quot;; use &lt;domain&gt;.farewell.v1.greet" type="lint">$DIR/contracts/farewell.v1.json:50:18: error[SOA002 subject-service] at /operations/greet/subject: subject demo.greeter.v1.greet names service &quot;greeter&quot; but the document is &quot;farewell&quot;; use &lt;domain&gt;.farewell.v1.greet
                  fingerprint: 1de543c3ba75c555</failure>
                    </testcase>
                  </testsuite>
                  <testsuite name="greeter 1.0.0 ($DIR/contracts/greeter.v1.json)" tests="1" failures="0" errors="0" skipped="0">
                    <testcase classname="greeter" name="contract check" file="$DIR/contracts/greeter.v1.json">
                      <system-out>$DIR/contracts/greeter.v1.json:20:16: warning[SOA041 event-description] at /events/greeted: event greeted has no description; say what happened when it is published
                  fingerprint: 67fde520e9ee26bf</system-out>
                    </testcase>
                  </testsuite>
                </testsuites>
            "#]],
        )
        .await;
}

#[tokio::test]
async fn check_reports_findings_as_sarif() {
    let workspace = documents_with_findings();
    workspace
        .check(
            &["contract", "check", "--format", "sarif", "$DIR/contracts/farewell.v1.json"],
            expect![[r#"
                exit 1
                --- stdout
                {
                  "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
                  "runs": [
                    {
                      "invocations": [
                        {
                          "executionSuccessful": true,
                          "exitCode": 1
                        }
                      ],
                      "results": [
                        {
                          "level": "error",
                          "locations": [
                            {
                              "logicalLocations": [
                                {
                                  "fullyQualifiedName": "/operations/greet/subject",
                                  "kind": "member"
                                }
                              ],
                              "physicalLocation": {
                                "artifactLocation": {
                                  "uri": "file://$DIR/contracts/farewell.v1.json"
                                },
                                "region": {
                                  "startColumn": 18,
                                  "startLine": 50
                                }
                              }
                            }
                          ],
                          "message": {
                            "text": "at /operations/greet/subject: subject demo.greeter.v1.greet names service \"greeter\" but the document is \"farewell\"; use <domain>.farewell.v1.greet"
                          },
                          "partialFingerprints": {
                            "soaFingerprint/v1": "1de543c3ba75c555"
                          },
                          "ruleId": "SOA002",
                          "ruleIndex": 0
                        }
                      ],
                      "tool": {
                        "driver": {
                          "fullName": "soa contract (soabus contract gate)",
                          "name": "soa",
                          "rules": [
                            {
                              "id": "SOA002",
                              "name": "subject-service",
                              "properties": {
                                "kind": "lint"
                              },
                              "shortDescription": {
                                "text": "Contract lint rule SOA002 subject-service"
                              }
                            }
                          ],
                          "version": "0.1.0"
                        }
                      }
                    }
                  ],
                  "version": "2.1.0"
                }
            "#]],
        )
        .await;
}

#[tokio::test]
async fn colour_only_when_asked_or_on_a_terminal() {
    let workspace = documents_with_findings();
    let (_, plain) = workspace.soa(&["contract", "check", "$DIR/contracts"]).await;
    assert!(!plain.contains('\x1b'), "{plain}");
    let (_, coloured) = workspace
        .soa(&["--color", "always", "contract", "check", "$DIR/contracts"])
        .await;
    assert!(
        coloured.contains("\x1b[1;31merror[SOA002 subject-service]\x1b[0m"),
        "{coloured}"
    );
    assert!(
        coloured.contains("\x1b[1;33mwarning[SOA041 event-description]\x1b[0m"),
        "{coloured}"
    );
}

/// A repository with the greeter and farewell committed on `main`.
fn repository() -> Workspace {
    let workspace = Workspace::new();
    workspace.init_git();
    workspace.write_json("contracts/catalog/greeter.v1.json", &greeter());
    workspace.write_json("contracts/catalog/farewell.v1.json", &farewell());
    workspace.commit("the first contracts");
    workspace
}

/// The greeter 1.1.0 with a change that breaks BACKWARD (a request's bound
/// tightened), one the checker cannot decide (an `if`/`then` on the
/// response) and a compatible one (an optional request property).
fn breaking_greeter() -> Value {
    greeter_with("1.1.0", |document| {
        let greet = &mut document["$defs"]["Greet"];
        greet["properties"]["name"]["maxLength"] = json!(32);
        greet["properties"]["style"] = json!({ "enum": ["formal", "casual"] });
        let response = &mut document["operations"]["greet"]["response"];
        response["if"] = json!({ "required": ["greeting"] });
        response["then"] = json!({ "properties": { "greeting": { "minLength": 1 } } });
    })
}

#[tokio::test]
async fn a_compatible_change_against_a_revision_passes() {
    let repository = repository();
    repository.write_json(
        "contracts/catalog/greeter.v1.json",
        &greeter_with("1.1.0", |document| {
            document["$defs"]["Greet"]["properties"]["style"] = json!({ "enum": ["formal", "casual"] });
        }),
    );
    repository.write_json("contracts/catalog/welcome.v1.json", &{
        let mut welcome = farewell();
        welcome["service"] = json!("welcome");
        welcome["operations"]["greet"]["subject"] = json!("demo.welcome.v1.greet");
        welcome["events"]["greeted"]["subject"] = json!("demo.welcome.v1.greeted");
        welcome
    });
    repository
        .check(
            &["contract", "check", "$DIR/contracts/catalog", "--against", "main"],
            expect![[r#"
                exit 0
                --- stdout
                greeter 1.1.0 ($DIR/contracts/catalog/greeter.v1.json), against main (greeter@1.0.0, BACKWARD): strict compatible, lenient compatible
                  $DIR/contracts/catalog/greeter.v1.json:10:18: note[property-added] compatible change at /operations/greet/request/$ref/properties/style: property "style" added; it was not allowed (the content model was closed) (fingerprint 56b39318cf4bc37f)
                welcome 1.0.0 ($DIR/contracts/catalog/welcome.v1.json)
                  $DIR/contracts/catalog/welcome.v1.json: note[new-document]: new document, nothing to compare: it does not exist at main (fingerprint 07c162851d58a64f)

                3 documents, 0 errors, 0 warnings, 2 notes
                against main: strict compatible, lenient compatible (2 compared, 1 new)
            "#]],
        )
        .await;
}

#[tokio::test]
async fn a_breaking_change_against_a_revision_is_annotated_on_its_lines() {
    let repository = repository();
    repository.write_json("contracts/catalog/greeter.v1.json", &breaking_greeter());
    repository
        .check(
            &["contract", "check", "$DIR/contracts/catalog", "--against", "main", "--format", "github"],
            expect![[r#"
                exit 1
                --- stdout
                ::error file=contracts/catalog/greeter.v1.json,line=7,col=24,title=breaking change bound-tightened::breaking change at /operations/greet/request/$ref/properties/name/maxLength: maxLength changed from 64 to 32%0Afingerprint: 251601caf99fe37e
                ::notice file=contracts/catalog/greeter.v1.json,line=10,col=18,title=compatible change property-added::compatible change at /operations/greet/request/$ref/properties/style: property "style" added; it was not allowed (the content model was closed)%0Afingerprint: 56b39318cf4bc37f
                ::error file=contracts/catalog/greeter.v1.json,line=46,col=15,title=unclassified change conditional-changed::unclassified change at /operations/greet/response/if: the if condition changed; which instances each branch applies to cannot be compared exactly%0Afingerprint: c2d351d25b11c0d9
                2 documents, 2 errors, 0 warnings, 1 note
                against main: strict incompatible, lenient incompatible (2 compared, 0 new)
                To accept a finding or change on purpose, add its fingerprint to .soa-ignore.
            "#]],
        )
        .await;
}

#[tokio::test]
async fn a_breaking_change_against_a_revision_in_the_other_formats() {
    let repository = repository();
    repository.write_json("contracts/catalog/greeter.v1.json", &breaking_greeter());
    let greeter = "$DIR/contracts/catalog/greeter.v1.json";
    repository
        .check(
            &["contract", "check", greeter, "--against", "main"],
            expect![[r#"
                exit 1
                --- stdout
                greeter 1.1.0 ($DIR/contracts/catalog/greeter.v1.json), against main (greeter@1.0.0, BACKWARD): strict incompatible, lenient incompatible
                  $DIR/contracts/catalog/greeter.v1.json:7:24: error[bound-tightened] breaking change at /operations/greet/request/$ref/properties/name/maxLength: maxLength changed from 64 to 32 (fingerprint 251601caf99fe37e)
                  $DIR/contracts/catalog/greeter.v1.json:10:18: note[property-added] compatible change at /operations/greet/request/$ref/properties/style: property "style" added; it was not allowed (the content model was closed) (fingerprint 56b39318cf4bc37f)
                  $DIR/contracts/catalog/greeter.v1.json:46:15: error[conditional-changed] unclassified change at /operations/greet/response/if: the if condition changed; which instances each branch applies to cannot be compared exactly (fingerprint c2d351d25b11c0d9)

                1 document, 2 errors, 0 warnings, 1 note
                against main: strict incompatible, lenient incompatible (1 compared, 0 new)
                To accept a finding or change on purpose, add its fingerprint to .soa-ignore.
            "#]],
        )
        .await;
    repository
        .check(
            &["contract", "check", greeter, "--against", "main", "--format", "json"],
            expect![[r#"
                exit 1
                --- stdout
                {
                  "command": "check",
                  "against": "main",
                  "lenient": false,
                  "documents": [
                    {
                      "path": "$DIR/contracts/catalog/greeter.v1.json",
                      "repo_path": "contracts/catalog/greeter.v1.json",
                      "service": "greeter",
                      "version": "1.1.0",
                      "comparison": {
                        "base": "main",
                        "old_path": "contracts/catalog/greeter.v1.json",
                        "old_contract": "greeter@1.0.0",
                        "policy": "BACKWARD",
                        "outcome": "compared",
                        "verdict": {
                          "strict": false,
                          "lenient": false
                        }
                      },
                      "diagnostics": [
                        {
                          "level": "error",
                          "kind": "change",
                          "rule": "bound-tightened",
                          "pointer": "/operations/greet/request/$ref/properties/name/maxLength",
                          "old_pointer": "/operations/greet/request/$ref/properties/name/maxLength",
                          "line": 7,
                          "column": 24,
                          "message": "maxLength changed from 64 to 32",
                          "change": {
                            "role": "request",
                            "member": "greet",
                            "effect": "narrows",
                            "breaking": true
                          },
                          "fingerprint": "251601caf99fe37e",
                          "ignored": false
                        },
                        {
                          "level": "note",
                          "kind": "change",
                          "rule": "property-added",
                          "pointer": "/operations/greet/request/$ref/properties/style",
                          "old_pointer": "/operations/greet/request/$ref/properties",
                          "line": 10,
                          "column": 18,
                          "message": "property \"style\" added; it was not allowed (the content model was closed)",
                          "change": {
                            "role": "request",
                            "member": "greet",
                            "effect": "widens",
                            "breaking": false
                          },
                          "fingerprint": "56b39318cf4bc37f",
                          "ignored": false
                        },
                        {
                          "level": "error",
                          "kind": "change",
                          "rule": "conditional-changed",
                          "pointer": "/operations/greet/response/if",
                          "old_pointer": "/operations/greet/response/if",
                          "line": 46,
                          "column": 15,
                          "message": "the if condition changed; which instances each branch applies to cannot be compared exactly",
                          "change": {
                            "role": "response",
                            "member": "greet",
                            "effect": "unclassified",
                            "breaking": null
                          },
                          "fingerprint": "c2d351d25b11c0d9",
                          "ignored": false
                        }
                      ]
                    }
                  ],
                  "summary": {
                    "documents": 1,
                    "errors": 2,
                    "warnings": 0,
                    "notes": 1,
                    "ignored": 0,
                    "verdict": {
                      "strict": false,
                      "lenient": false
                    },
                    "exit_code": 1
                  }
                }
            "#]],
        )
        .await;
    repository
        .check(
            &["contract", "check", greeter, "--against", "main", "--format", "junit"],
            expect![[r#"
                exit 1
                --- stdout
                <?xml version="1.0" encoding="UTF-8"?>
                <testsuites name="soa contract check" tests="4" failures="2" errors="0" skipped="0">
                  <testsuite name="greeter 1.1.0 ($DIR/contracts/catalog/greeter.v1.json)" tests="4" failures="2" errors="0" skipped="0">
                    <testcase classname="greeter" name="contract check" file="contracts/catalog/greeter.v1.json"/>
                    <testcase classname="greeter" name="bound-tightened at /operations/greet/request/$ref/properties/name/maxLength" file="contracts/catalog/greeter.v1.json">
                      <failure message="maxLength changed from 64 to 32" type="breaking">$DIR/contracts/catalog/greeter.v1.json:7:24: error[bound-tightened] breaking change at /operations/greet/request/$ref/properties/name/maxLength: maxLength changed from 64 to 32
                  fingerprint: 251601caf99fe37e</failure>
                    </testcase>
                    <testcase classname="greeter" name="property-added at /operations/greet/request/$ref/properties/style" file="contracts/catalog/greeter.v1.json">
                      <system-out>$DIR/contracts/catalog/greeter.v1.json:10:18: note[property-added] compatible change at /operations/greet/request/$ref/properties/style: property &quot;style&quot; added; it was not allowed (the content model was closed)
                  fingerprint: 56b39318cf4bc37f</system-out>
                    </testcase>
                    <testcase classname="greeter" name="conditional-changed at /operations/greet/response/if" file="contracts/catalog/greeter.v1.json">
                      <failure message="the if condition changed; which instances each branch applies to cannot be compared exactly" type="unclassified">$DIR/contracts/catalog/greeter.v1.json:46:15: error[conditional-changed] unclassified change at /operations/greet/response/if: the if condition changed; which instances each branch applies to cannot be compared exactly
                  fingerprint: c2d351d25b11c0d9</failure>
                    </testcase>
                  </testsuite>
                </testsuites>
            "#]],
        )
        .await;
    repository
        .check(
            &["contract", "check", greeter, "--against", "main", "--format", "sarif"],
            expect![[r#"
                exit 1
                --- stdout
                {
                  "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
                  "runs": [
                    {
                      "invocations": [
                        {
                          "executionSuccessful": true,
                          "exitCode": 1
                        }
                      ],
                      "results": [
                        {
                          "level": "error",
                          "locations": [
                            {
                              "logicalLocations": [
                                {
                                  "fullyQualifiedName": "/operations/greet/request/$ref/properties/name/maxLength",
                                  "kind": "member"
                                }
                              ],
                              "physicalLocation": {
                                "artifactLocation": {
                                  "uri": "contracts/catalog/greeter.v1.json"
                                },
                                "region": {
                                  "startColumn": 24,
                                  "startLine": 7
                                }
                              }
                            }
                          ],
                          "message": {
                            "text": "breaking change at /operations/greet/request/$ref/properties/name/maxLength: maxLength changed from 64 to 32"
                          },
                          "partialFingerprints": {
                            "soaFingerprint/v1": "251601caf99fe37e"
                          },
                          "properties": {
                            "change": "breaking"
                          },
                          "ruleId": "bound-tightened",
                          "ruleIndex": 0
                        },
                        {
                          "level": "note",
                          "locations": [
                            {
                              "logicalLocations": [
                                {
                                  "fullyQualifiedName": "/operations/greet/request/$ref/properties/style",
                                  "kind": "member"
                                }
                              ],
                              "physicalLocation": {
                                "artifactLocation": {
                                  "uri": "contracts/catalog/greeter.v1.json"
                                },
                                "region": {
                                  "startColumn": 18,
                                  "startLine": 10
                                }
                              }
                            }
                          ],
                          "message": {
                            "text": "compatible change at /operations/greet/request/$ref/properties/style: property \"style\" added; it was not allowed (the content model was closed)"
                          },
                          "partialFingerprints": {
                            "soaFingerprint/v1": "56b39318cf4bc37f"
                          },
                          "properties": {
                            "change": "compatible"
                          },
                          "ruleId": "property-added",
                          "ruleIndex": 2
                        },
                        {
                          "level": "error",
                          "locations": [
                            {
                              "logicalLocations": [
                                {
                                  "fullyQualifiedName": "/operations/greet/response/if",
                                  "kind": "member"
                                }
                              ],
                              "physicalLocation": {
                                "artifactLocation": {
                                  "uri": "contracts/catalog/greeter.v1.json"
                                },
                                "region": {
                                  "startColumn": 15,
                                  "startLine": 46
                                }
                              }
                            }
                          ],
                          "message": {
                            "text": "unclassified change at /operations/greet/response/if: the if condition changed; which instances each branch applies to cannot be compared exactly"
                          },
                          "partialFingerprints": {
                            "soaFingerprint/v1": "c2d351d25b11c0d9"
                          },
                          "properties": {
                            "change": "unclassified"
                          },
                          "ruleId": "conditional-changed",
                          "ruleIndex": 1
                        }
                      ],
                      "tool": {
                        "driver": {
                          "fullName": "soa contract (soabus contract gate)",
                          "name": "soa",
                          "rules": [
                            {
                              "id": "bound-tightened",
                              "name": "bound-tightened",
                              "properties": {
                                "kind": "change"
                              },
                              "shortDescription": {
                                "text": "Compatibility change bound-tightened"
                              }
                            },
                            {
                              "id": "conditional-changed",
                              "name": "conditional-changed",
                              "properties": {
                                "kind": "change"
                              },
                              "shortDescription": {
                                "text": "Compatibility change conditional-changed"
                              }
                            },
                            {
                              "id": "property-added",
                              "name": "property-added",
                              "properties": {
                                "kind": "change"
                              },
                              "shortDescription": {
                                "text": "Compatibility change property-added"
                              }
                            }
                          ],
                          "version": "0.1.0"
                        }
                      }
                    }
                  ],
                  "version": "2.1.0"
                }
            "#]],
        )
        .await;
}

#[tokio::test]
async fn an_ignore_file_accepts_a_known_break_and_lenient_the_undecided() {
    let repository = repository();
    repository.write_json("contracts/catalog/greeter.v1.json", &breaking_greeter());
    let (exit, output) = repository
        .soa(&[
            "contract",
            "check",
            "$DIR/contracts/catalog",
            "--against",
            "main",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(exit, Exit::Failure, "{output}");
    let json: Value = serde_json::from_str(output.split_once("--- stdout\n").unwrap().1).unwrap();
    let breaking = json["documents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|document| document["diagnostics"].as_array().unwrap())
        .find(|diagnostic| diagnostic["change"]["breaking"] == json!(true))
        .unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    repository.write(
        "accepted",
        &format!("# Accepted on purpose: greetings are shorter now.\n{breaking}  # ticket 42\n"),
    );
    repository
        .check(
            &[
                "contract",
                "check",
                "$DIR/contracts/catalog",
                "--against",
                "main",
                "--ignore",
                "$DIR/accepted",
                "--lenient",
            ],
            expect![[r#"
                exit 0
                --- stdout
                greeter 1.1.0 ($DIR/contracts/catalog/greeter.v1.json), against main (greeter@1.0.0, BACKWARD): strict incompatible, lenient compatible
                  $DIR/contracts/catalog/greeter.v1.json:7:24: ignored error[bound-tightened] breaking change at /operations/greet/request/$ref/properties/name/maxLength: maxLength changed from 64 to 32 (fingerprint 251601caf99fe37e)
                  $DIR/contracts/catalog/greeter.v1.json:10:18: note[property-added] compatible change at /operations/greet/request/$ref/properties/style: property "style" added; it was not allowed (the content model was closed) (fingerprint 56b39318cf4bc37f)
                  $DIR/contracts/catalog/greeter.v1.json:46:15: warning[conditional-changed] unclassified change at /operations/greet/response/if: the if condition changed; which instances each branch applies to cannot be compared exactly (fingerprint c2d351d25b11c0d9)

                2 documents, 0 errors, 1 warning, 1 note, 1 ignored
                against main: strict incompatible, lenient compatible (2 compared, 0 new); --lenient: the lenient verdict decides
            "#]],
        )
        .await;
    // Without --lenient, the change the checker cannot decide still fails.
    let (exit, _) = repository
        .soa(&[
            "contract",
            "check",
            "$DIR/contracts/catalog",
            "--against",
            "main",
            "--ignore",
            "$DIR/accepted",
        ])
        .await;
    assert_eq!(exit, Exit::Failure);
}

#[tokio::test]
async fn a_removed_document_breaks_and_a_moved_one_is_compared_where_it_went() {
    let repository = repository();
    std::fs::remove_file(repository.path("contracts/catalog/farewell.v1.json")).unwrap();
    std::fs::create_dir(repository.path("contracts/catalog/greeter")).unwrap();
    std::fs::rename(
        repository.path("contracts/catalog/greeter.v1.json"),
        repository.path("contracts/catalog/greeter/v1.json"),
    )
    .unwrap();
    repository
        .check(
            &["contract", "check", "$DIR/contracts/catalog", "--against", "main"],
            expect![[r#"
                exit 1
                --- stdout
                greeter 1.0.0 ($DIR/contracts/catalog/greeter/v1.json), against main (greeter@1.0.0, BACKWARD): strict compatible, lenient compatible
                  $DIR/contracts/catalog/greeter/v1.json: note[document-moved]: moved: at main the contract greeter@1.0.0 was at contracts/catalog/greeter.v1.json; compared with that (fingerprint cdf5cff83f78513e)
                farewell 1.0.0 ($DIR/contracts/catalog/farewell.v1.json), against main (farewell@1.0.0, BACKWARD): strict incompatible, lenient incompatible
                  $DIR/contracts/catalog/farewell.v1.json: error[document-removed] breaking change: the contract farewell@1.0.0 was at contracts/catalog/farewell.v1.json at main and is gone, so its callers and consumers lose it; if it moved, keep its service and major; if it is retired on purpose, accept this change by its fingerprint (fingerprint c05ae5fe562967ca)

                2 documents, 1 error, 0 warnings, 1 note
                against main: strict incompatible, lenient incompatible (2 compared, 0 new)
                To accept a finding or change on purpose, add its fingerprint to .soa-ignore.
            "#]],
        )
        .await;
}

#[tokio::test]
async fn diff_of_two_documents() {
    let workspace = Workspace::new();
    workspace.write_json("old.json", &greeter());
    workspace.write_json("new.json", &breaking_greeter());
    workspace
        .check(&["contract", "diff", "$DIR/old.json", "$DIR/new.json"], expect![[r#"
            exit 1
            --- stdout
            greeter 1.1.0 ($DIR/new.json), against $DIR/old.json (greeter@1.0.0, BACKWARD): strict incompatible, lenient incompatible
              $DIR/new.json:7:24: error[bound-tightened] breaking change at /operations/greet/request/$ref/properties/name/maxLength: maxLength changed from 64 to 32 (fingerprint 251601caf99fe37e)
              $DIR/new.json:10:18: note[property-added] compatible change at /operations/greet/request/$ref/properties/style: property "style" added; it was not allowed (the content model was closed) (fingerprint 56b39318cf4bc37f)
              $DIR/new.json:46:15: error[conditional-changed] unclassified change at /operations/greet/response/if: the if condition changed; which instances each branch applies to cannot be compared exactly (fingerprint c2d351d25b11c0d9)

            1 document, 2 errors, 0 warnings, 1 note
            against $DIR/old.json: strict incompatible, lenient incompatible
            To accept a finding or change on purpose, add its fingerprint to .soa-ignore.
        "#]])
        .await;
    // Under FORWARD the tightened request is fine and the optional property is not.
    workspace
        .check(
            &["contract", "diff", "$DIR/old.json", "$DIR/new.json", "--mode", "forward", "--lenient"],
            expect![[r#"
                exit 1
                --- stdout
                greeter 1.1.0 ($DIR/new.json), against $DIR/old.json (greeter@1.0.0, FORWARD): strict incompatible, lenient incompatible
                  $DIR/new.json:7:24: note[bound-tightened] compatible change at /operations/greet/request/$ref/properties/name/maxLength: maxLength changed from 64 to 32 (fingerprint 251601caf99fe37e)
                  $DIR/new.json:10:18: error[property-added] breaking change at /operations/greet/request/$ref/properties/style: property "style" added; it was not allowed (the content model was closed) (fingerprint 56b39318cf4bc37f)
                  $DIR/new.json:46:15: warning[conditional-changed] unclassified change at /operations/greet/response/if: the if condition changed; which instances each branch applies to cannot be compared exactly (fingerprint c2d351d25b11c0d9)

                1 document, 1 error, 1 warning, 1 note
                against $DIR/old.json: strict incompatible, lenient incompatible; --lenient: the lenient verdict decides
                To accept a finding or change on purpose, add its fingerprint to .soa-ignore.
            "#]],
        )
        .await;
}

/// Two schemas whose diff has one compatible, one breaking and one
/// undecidable change under BACKWARD.
fn schemas() -> Workspace {
    let workspace = Workspace::new();
    workspace.write_json(
        "old.schema.json",
        &json!({
            "type": "object",
            "properties": { "name": { "type": "string", "maxLength": 64 }, "age": { "type": "integer" } },
            "required": ["name"]
        }),
    );
    workspace.write_json(
        "wider.schema.json",
        &json!({
            "type": "object",
            "properties": { "name": { "type": "string", "maxLength": 128 }, "age": { "type": "integer" } },
            "required": ["name"]
        }),
    );
    workspace.write_json(
        "new.schema.json",
        &json!({
            "type": "object",
            "properties": { "name": { "type": "string", "maxLength": 32 }, "age": { "type": ["integer", "null"] } },
            "required": ["name"],
            "if": { "required": ["age"] },
            "then": { "required": ["name"] }
        }),
    );
    workspace.write_json(
        "undecided.schema.json",
        &json!({
            "type": "object",
            "properties": { "name": { "type": "string", "maxLength": 64 }, "age": { "type": "integer" } },
            "required": ["name"],
            "if": { "required": ["age"] },
            "then": { "required": ["name"] }
        }),
    );
    workspace
}

#[tokio::test]
async fn diff_of_two_schemas_compatible_breaking_and_undecided() {
    let schemas = schemas();
    let diff = |new: &'static str| ["contract", "diff", "--schema", "$DIR/old.schema.json", new];
    schemas.check(&diff("$DIR/wider.schema.json"), expect![[r#"
        exit 0
        --- stdout
        $DIR/wider.schema.json, against $DIR/old.schema.json (BACKWARD): strict compatible, lenient compatible
          $DIR/wider.schema.json:7:20: note[bound-loosened] compatible change at /properties/name/maxLength: maxLength changed from 64 to 128 (fingerprint b29ebdf2883d1b5f)

        1 document, 0 errors, 0 warnings, 1 note
        against $DIR/old.schema.json: strict compatible, lenient compatible
    "#]]).await;
    schemas.check(&diff("$DIR/undecided.schema.json"), expect![[r#"
        exit 1
        --- stdout
        $DIR/undecided.schema.json, against $DIR/old.schema.json (BACKWARD): strict incompatible, lenient compatible
          $DIR/undecided.schema.json:2:9: error[conditional-changed] unclassified change at /if: the if condition changed; which instances each branch applies to cannot be compared exactly (fingerprint 70d6b95ded1ac50b)

        1 document, 1 error, 0 warnings
        against $DIR/old.schema.json: strict incompatible, lenient compatible
        To accept a finding or change on purpose, add its fingerprint to .soa-ignore.
    "#]]).await;
    let mut lenient = diff("$DIR/undecided.schema.json").to_vec();
    lenient.push("--lenient");
    schemas.check(&lenient, expect![[r#"
        exit 0
        --- stdout
        $DIR/undecided.schema.json, against $DIR/old.schema.json (BACKWARD): strict incompatible, lenient compatible
          $DIR/undecided.schema.json:2:9: warning[conditional-changed] unclassified change at /if: the if condition changed; which instances each branch applies to cannot be compared exactly (fingerprint 70d6b95ded1ac50b)

        1 document, 0 errors, 1 warning
        against $DIR/old.schema.json: strict incompatible, lenient compatible; --lenient: the lenient verdict decides
    "#]]).await;
    let mut forward = diff("$DIR/wider.schema.json").to_vec();
    forward.extend(["--mode", "forward"]);
    schemas.check(&forward, expect![[r#"
        exit 1
        --- stdout
        $DIR/wider.schema.json, against $DIR/old.schema.json (FORWARD): strict incompatible, lenient incompatible
          $DIR/wider.schema.json:7:20: error[bound-loosened] breaking change at /properties/name/maxLength: maxLength changed from 64 to 128 (fingerprint b29ebdf2883d1b5f)

        1 document, 1 error, 0 warnings
        against $DIR/old.schema.json: strict incompatible, lenient incompatible
        To accept a finding or change on purpose, add its fingerprint to .soa-ignore.
    "#]]).await;
}

#[tokio::test]
async fn diff_of_two_schemas_in_every_format() {
    let schemas = schemas();
    let diff = |format: &'static str| {
        [
            "contract",
            "diff",
            "--schema",
            "$DIR/old.schema.json",
            "$DIR/new.schema.json",
            "--format",
            format,
        ]
    };
    schemas.check(&diff("human"), expect![[r#"
        exit 1
        --- stdout
        $DIR/new.schema.json, against $DIR/old.schema.json (BACKWARD): strict incompatible, lenient incompatible
          $DIR/new.schema.json:2:9: error[conditional-changed] unclassified change at /if: the if condition changed; which instances each branch applies to cannot be compared exactly (fingerprint fdf1ff617793250d)
          $DIR/new.schema.json:9:15: note[type-widened] compatible change at /properties/age/type: null is now allowed (fingerprint 4bcfc2341a31803d)
          $DIR/new.schema.json:15:20: error[bound-tightened] breaking change at /properties/name/maxLength: maxLength changed from 64 to 32 (fingerprint 2c7746a600d626d2)

        1 document, 2 errors, 0 warnings, 1 note
        against $DIR/old.schema.json: strict incompatible, lenient incompatible
        To accept a finding or change on purpose, add its fingerprint to .soa-ignore.
    "#]]).await;
    schemas.check(&diff("json"), expect![[r#"
        exit 1
        --- stdout
        {
          "command": "diff",
          "lenient": false,
          "documents": [
            {
              "path": "$DIR/new.schema.json",
              "comparison": {
                "base": "$DIR/old.schema.json",
                "old_path": "$DIR/old.schema.json",
                "policy": "BACKWARD",
                "outcome": "compared",
                "verdict": {
                  "strict": false,
                  "lenient": false
                }
              },
              "diagnostics": [
                {
                  "level": "error",
                  "kind": "change",
                  "rule": "conditional-changed",
                  "pointer": "/if",
                  "old_pointer": "/if",
                  "line": 2,
                  "column": 9,
                  "message": "the if condition changed; which instances each branch applies to cannot be compared exactly",
                  "change": {
                    "effect": "unclassified",
                    "breaking": null
                  },
                  "fingerprint": "fdf1ff617793250d",
                  "ignored": false
                },
                {
                  "level": "note",
                  "kind": "change",
                  "rule": "type-widened",
                  "pointer": "/properties/age/type",
                  "old_pointer": "/properties/age",
                  "line": 9,
                  "column": 15,
                  "message": "null is now allowed",
                  "change": {
                    "effect": "widens",
                    "breaking": false
                  },
                  "fingerprint": "4bcfc2341a31803d",
                  "ignored": false
                },
                {
                  "level": "error",
                  "kind": "change",
                  "rule": "bound-tightened",
                  "pointer": "/properties/name/maxLength",
                  "old_pointer": "/properties/name/maxLength",
                  "line": 15,
                  "column": 20,
                  "message": "maxLength changed from 64 to 32",
                  "change": {
                    "effect": "narrows",
                    "breaking": true
                  },
                  "fingerprint": "2c7746a600d626d2",
                  "ignored": false
                }
              ]
            }
          ],
          "summary": {
            "documents": 1,
            "errors": 2,
            "warnings": 0,
            "notes": 1,
            "ignored": 0,
            "verdict": {
              "strict": false,
              "lenient": false
            },
            "exit_code": 1
          }
        }
    "#]]).await;
    schemas.check(&diff("github"), expect![[r#"
        exit 1
        --- stdout
        ::error file=$DIR/new.schema.json,line=2,col=9,title=unclassified change conditional-changed::unclassified change at /if: the if condition changed; which instances each branch applies to cannot be compared exactly%0Afingerprint: fdf1ff617793250d
        ::notice file=$DIR/new.schema.json,line=9,col=15,title=compatible change type-widened::compatible change at /properties/age/type: null is now allowed%0Afingerprint: 4bcfc2341a31803d
        ::error file=$DIR/new.schema.json,line=15,col=20,title=breaking change bound-tightened::breaking change at /properties/name/maxLength: maxLength changed from 64 to 32%0Afingerprint: 2c7746a600d626d2
        1 document, 2 errors, 0 warnings, 1 note
        against $DIR/old.schema.json: strict incompatible, lenient incompatible
        To accept a finding or change on purpose, add its fingerprint to .soa-ignore.
    "#]]).await;
    schemas.check(&diff("junit"), expect![[r#"
        exit 1
        --- stdout
        <?xml version="1.0" encoding="UTF-8"?>
        <testsuites name="soa contract diff" tests="4" failures="2" errors="0" skipped="0">
          <testsuite name="$DIR/new.schema.json" tests="4" failures="2" errors="0" skipped="0">
            <testcase classname="$DIR/new.schema.json" name="contract check" file="$DIR/new.schema.json"/>
            <testcase classname="$DIR/new.schema.json" name="conditional-changed at /if" file="$DIR/new.schema.json">
              <failure message="the if condition changed; which instances each branch applies to cannot be compared exactly" type="unclassified">$DIR/new.schema.json:2:9: error[conditional-changed] unclassified change at /if: the if condition changed; which instances each branch applies to cannot be compared exactly
          fingerprint: fdf1ff617793250d</failure>
            </testcase>
            <testcase classname="$DIR/new.schema.json" name="type-widened at /properties/age/type" file="$DIR/new.schema.json">
              <system-out>$DIR/new.schema.json:9:15: note[type-widened] compatible change at /properties/age/type: null is now allowed
          fingerprint: 4bcfc2341a31803d</system-out>
            </testcase>
            <testcase classname="$DIR/new.schema.json" name="bound-tightened at /properties/name/maxLength" file="$DIR/new.schema.json">
              <failure message="maxLength changed from 64 to 32" type="breaking">$DIR/new.schema.json:15:20: error[bound-tightened] breaking change at /properties/name/maxLength: maxLength changed from 64 to 32
          fingerprint: 2c7746a600d626d2</failure>
            </testcase>
          </testsuite>
        </testsuites>
    "#]]).await;
    schemas.check(&diff("sarif"), expect![[r#"
        exit 1
        --- stdout
        {
          "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
          "runs": [
            {
              "invocations": [
                {
                  "executionSuccessful": true,
                  "exitCode": 1
                }
              ],
              "results": [
                {
                  "level": "error",
                  "locations": [
                    {
                      "logicalLocations": [
                        {
                          "fullyQualifiedName": "/if",
                          "kind": "member"
                        }
                      ],
                      "physicalLocation": {
                        "artifactLocation": {
                          "uri": "file://$DIR/new.schema.json"
                        },
                        "region": {
                          "startColumn": 9,
                          "startLine": 2
                        }
                      }
                    }
                  ],
                  "message": {
                    "text": "unclassified change at /if: the if condition changed; which instances each branch applies to cannot be compared exactly"
                  },
                  "partialFingerprints": {
                    "soaFingerprint/v1": "fdf1ff617793250d"
                  },
                  "properties": {
                    "change": "unclassified"
                  },
                  "ruleId": "conditional-changed",
                  "ruleIndex": 1
                },
                {
                  "level": "note",
                  "locations": [
                    {
                      "logicalLocations": [
                        {
                          "fullyQualifiedName": "/properties/age/type",
                          "kind": "member"
                        }
                      ],
                      "physicalLocation": {
                        "artifactLocation": {
                          "uri": "file://$DIR/new.schema.json"
                        },
                        "region": {
                          "startColumn": 15,
                          "startLine": 9
                        }
                      }
                    }
                  ],
                  "message": {
                    "text": "compatible change at /properties/age/type: null is now allowed"
                  },
                  "partialFingerprints": {
                    "soaFingerprint/v1": "4bcfc2341a31803d"
                  },
                  "properties": {
                    "change": "compatible"
                  },
                  "ruleId": "type-widened",
                  "ruleIndex": 2
                },
                {
                  "level": "error",
                  "locations": [
                    {
                      "logicalLocations": [
                        {
                          "fullyQualifiedName": "/properties/name/maxLength",
                          "kind": "member"
                        }
                      ],
                      "physicalLocation": {
                        "artifactLocation": {
                          "uri": "file://$DIR/new.schema.json"
                        },
                        "region": {
                          "startColumn": 20,
                          "startLine": 15
                        }
                      }
                    }
                  ],
                  "message": {
                    "text": "breaking change at /properties/name/maxLength: maxLength changed from 64 to 32"
                  },
                  "partialFingerprints": {
                    "soaFingerprint/v1": "2c7746a600d626d2"
                  },
                  "properties": {
                    "change": "breaking"
                  },
                  "ruleId": "bound-tightened",
                  "ruleIndex": 0
                }
              ],
              "tool": {
                "driver": {
                  "fullName": "soa contract (soabus contract gate)",
                  "name": "soa",
                  "rules": [
                    {
                      "id": "bound-tightened",
                      "name": "bound-tightened",
                      "properties": {
                        "kind": "change"
                      },
                      "shortDescription": {
                        "text": "Compatibility change bound-tightened"
                      }
                    },
                    {
                      "id": "conditional-changed",
                      "name": "conditional-changed",
                      "properties": {
                        "kind": "change"
                      },
                      "shortDescription": {
                        "text": "Compatibility change conditional-changed"
                      }
                    },
                    {
                      "id": "type-widened",
                      "name": "type-widened",
                      "properties": {
                        "kind": "change"
                      },
                      "shortDescription": {
                        "text": "Compatibility change type-widened"
                      }
                    }
                  ],
                  "version": "0.1.0"
                }
              }
            }
          ],
          "version": "2.1.0"
        }
    "#]]).await;
}

#[tokio::test]
async fn malformed_input_is_one_clear_error_and_exit_2() {
    let workspace = Workspace::new();
    workspace.write("not-json.json", "{\n  \"contract\": \"soabus/v1\",\n  oops\n}\n");
    workspace.write("deep.json", &format!("{}{}", "[".repeat(100), "]".repeat(100)));
    workspace.write("not-a-schema.json", "{ \"type\": \"strnig\" }\n");
    workspace.write("schema.json", "{ \"type\": \"string\" }\n");
    workspace.write("bad-ignore", "0123456789abcdef\nbound-tightened /name\n");
    workspace.write_json("greeter.json", &greeter());

    workspace
        .check(
            &["contract", "check", "$DIR/not-json.json"],
            expect![[r#"
            exit 2
            --- stdout
            $DIR/not-json.json
              $DIR/not-json.json:3:3: error[json-syntax]: not valid JSON: key must be a string

            1 document, 1 error, 0 warnings
        "#]],
        )
        .await;
    workspace
        .check(
            &["contract", "check", "$DIR/not-json.json", "--format", "github"],
            expect![[r#"
                exit 2
                --- stdout
                ::error file=$DIR/not-json.json,line=3,col=3,title=json-syntax::not valid JSON: key must be a string
                1 document, 1 error, 0 warnings
                --- stderr
                error: $DIR/not-json.json:3:3: not valid JSON: key must be a string
            "#]],
        )
        .await;
    workspace
        .check(&["contract", "check", "$DIR/deep.json"], expect![[r#"
            exit 2
            --- stdout
            $DIR/deep.json
              $DIR/deep.json:1:65: error[too-deep]: the document nests arrays and objects deeper than 64 levels; flatten it by moving schemas into $defs and referring to them with $ref

            1 document, 1 error, 0 warnings
        "#]])
        .await;
    workspace
        .check(
            &["contract", "check", "$DIR/missing.json"],
            expect![[r#"
            exit 2
            --- stderr
            error: no such file or directory: $DIR/missing.json
        "#]],
        )
        .await;
    workspace
        .check(
            &["contract", "diff", "--schema", "$DIR/schema.json", "$DIR/not-a-schema.json"],
            expect![[r#"
                exit 2
                --- stdout
                $DIR/not-a-schema.json
                  $DIR/not-a-schema.json:1:11: error[not-a-schema] at /type: not a JSON Schema: "strnig" is not valid under any of the schemas listed in the 'anyOf' keyword

                1 document, 1 error, 0 warnings
            "#]],
        )
        .await;
    workspace
        .check(
            &["contract", "diff", "--schema", "$DIR/not-json.json", "$DIR/schema.json"],
            expect![[r#"
                exit 2
                --- stdout
                $DIR/not-json.json
                  $DIR/not-json.json:3:3: error[json-syntax]: not valid JSON: key must be a string

                1 document, 1 error, 0 warnings
            "#]],
        )
        .await;
    workspace
        .check(
            &["contract", "diff", "$DIR/greeter.json", "$DIR/missing.json"],
            expect![[r#"
                exit 2
                --- stderr
                error: no such file: $DIR/missing.json
            "#]],
        )
        .await;
    workspace
        .check(
            &["contract", "check", "$DIR/greeter.json", "--ignore", "$DIR/bad-ignore"],
            expect![[r#"
                exit 2
                --- stderr
                error: $DIR/bad-ignore:2: "bound-tightened /name" is not a fingerprint; each line holds one fingerprint of 16 lowercase hex digits as printed by soa contract, optionally followed by a # comment
            "#]],
        )
        .await;
    workspace
        .check(
            &["contract", "check", "$DIR/greeter.json", "--against", "main"],
            expect![[r#"
                exit 2
                --- stderr
                error: $DIR/greeter.json is not in a git repository, so --against has nothing to compare with
            "#]],
        )
        .await;

    let repository = repository();
    repository
        .check(
            &["contract", "check", "$DIR/contracts/catalog", "--against", "origin/mian"],
            expect![[r#"
                exit 2
                --- stderr
                error: unknown git revision "origin/mian" in the repository at $DIR: no commit has that name (in a shallow CI checkout, fetch it first, e.g. `git fetch origin main`, or check out with full history)
            "#]],
        )
        .await;
}

#[tokio::test]
async fn a_broken_earlier_version_does_not_block_its_fix() {
    let repository = Workspace::new();
    repository.init_git();
    repository.write("contracts/greeter.v1.json", "{ not json");
    repository.commit("a broken document");
    repository.write_json("contracts/greeter.v1.json", &greeter());
    let (exit, output) = repository
        .soa(&["contract", "check", "$DIR/contracts", "--against", "main"])
        .await;
    assert_eq!(exit, Exit::Success, "{output}");
    assert!(
        output.contains("warning[earlier-version-unreadable]: the version at main is not a valid contract document"),
        "{output}"
    );
}
