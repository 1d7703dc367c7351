//! The pages as HTML: one function per page over the data its handler
//! gathered, and the layout they share. maud escapes every `(value)`; the
//! only unescaped text is the graph's JSON, made safe for a `<script>` data
//! block by [`script_json`].

use maud::{DOCTYPE, Markup, PreEscaped, html};

use contracts::compat::{ContractChange, Mode, Role};
use contracts::registry_api::{EdgeKind, GraphEdge, GraphResponse, ServiceSummary};
use contracts::{ContractDocument, ContractRef, ServiceName};

use super::{CatalogueView, DiffView, MAX_ROWS, ServiceView, asset_url, schema};

/// Which part of the site a page belongs to, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Services,
    Graph,
    None,
}

fn layout(title: &str, section: Section, body: Markup) -> Markup {
    let current = |this: Section| (section == this).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · soabus registry" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(asset_url("style.css"));
                script src=(asset_url("app.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.site {
                    a.brand href="/" { "soabus registry" }
                    nav aria-label="Site" {
                        ul {
                            li { a href="/" aria-current=[current(Section::Services)] { "Services" } }
                            li { a href="/graph" aria-current=[current(Section::Graph)] { "Dependency graph" } }
                            li { a href="/openapi.json" { "HTTP API" } }
                        }
                    }
                }
                main #main { (body) }
                footer.site {
                    "Contracts, instances and dependencies as the registry holds them now. "
                    "The same data as JSON: " a href="/v1/services" { code { "/v1/services" } } "."
                }
            }
        }
    }
}

/// An error page: what went wrong and where to go from here.
pub(super) fn error(title: &str, message: &str) -> Markup {
    layout(
        title,
        Section::None,
        html! {
            h1 { (title) }
            p.banner.warn role="alert" { (message) }
            p { a href="/" { "Back to the services" } }
        },
    )
}

// ---------------------------------------------------------------------------
// The catalogue.

pub(super) fn catalogue(view: &CatalogueView) -> Markup {
    let heading = match (&view.query, &view.tag) {
        (None, None) => "Services".to_owned(),
        (Some(query), None) => format!("Services matching “{query}”"),
        (None, Some(tag)) => format!("Services tagged {tag}"),
        (Some(query), Some(tag)) => format!("Services tagged {tag} matching “{query}”"),
    };
    layout(
        &heading,
        Section::Services,
        html! {
            h1 { (heading) }
            form.search role="search" action="/" method="get" {
                label for="q" { "Search services" }
                div.search-row {
                    input #q type="search" name="q" value=[view.query.as_deref()]
                        placeholder="name, description, message…" autocomplete="off"
                        data-filter="services" aria-describedby="search-hint";
                    @if let Some(tag) = &view.tag {
                        input type="hidden" name="tag" value=(tag);
                    }
                    button type="submit" { "Search" }
                }
                p #search-hint .hint {
                    "Typing filters the list below; press Enter to search message descriptions too."
                }
            }
            @if !view.tags.is_empty() {
                nav.tags aria-label="Tags" {
                    h2.visually-hidden { "Tags" }
                    ul {
                        li {
                            a.chip href=(catalogue_url(view.query.as_deref(), None))
                                aria-current=[view.tag.is_none().then_some("page")] { "all" }
                        }
                        @for (tag, count) in &view.tags {
                            li {
                                a.chip href=(catalogue_url(view.query.as_deref(), Some(tag)))
                                    aria-current=[(view.tag.as_ref() == Some(tag)).then_some("page")] {
                                    (tag) " " span.count { (count) }
                                }
                            }
                        }
                    }
                }
            }
            p #filter-status .count role="status" {
                (view.matching) " of " (view.total) " services"
                @if view.matching > MAX_ROWS { "; the first " (MAX_ROWS) " are listed, narrow the search to see the rest" }
            }
            @if view.services.is_empty() {
                p.empty { "No service matches. " a href="/" { "Show every service" } "." }
            } @else {
                (services_table(&view.services))
            }
        },
    )
}

fn services_table(services: &[ServiceSummary]) -> Markup {
    html! {
        table #services .services {
            caption.visually-hidden { "Registered services" }
            thead {
                tr {
                    th scope="col" { "Service" }
                    th scope="col" { "Latest" }
                    th scope="col" { abbr title="healthy / total" { "Instances" } }
                    th scope="col" { "Drifting" }
                    th scope="col" { "Owner" }
                    th scope="col" { "Tags" }
                    th scope="col" { "Description" }
                }
            }
            tbody {
                @for service in services {
                    @let search = format!("{} {} {} {}", service.name, service.owner, service.tags.join(" "), service.description).to_lowercase();
                    tr data-search=(search) {
                        th scope="row" { a href={ "/services/" (service.name) } { (service.name) } }
                        td { a href={ "/services/" (service.name) "/versions/" (service.latest) } { (service.latest) } }
                        td.num.warn[service.healthy < service.instances] {
                            (service.healthy) "/" (service.instances)
                        }
                        td.num.warn[service.drifting > 0] {
                            @if service.drifting > 0 { "⚠ " }
                            (service.drifting)
                        }
                        td { (service.owner) }
                        td { (tag_chips(&service.tags)) }
                        td { (service.description) }
                    }
                }
            }
        }
    }
}

fn tag_chips(tags: &[String]) -> Markup {
    html! {
        @for tag in tags {
            a.chip.small href=(catalogue_url(None, Some(tag))) { (tag) } " "
        }
    }
}

/// `/?q=...&tag=...` with both values percent-encoded.
fn catalogue_url(query: Option<&str>, tag: Option<&str>) -> String {
    let mut parameters = Vec::new();
    if let Some(query) = query {
        parameters.push(format!("q={}", url_component(query)));
    }
    if let Some(tag) = tag {
        parameters.push(format!("tag={}", url_component(tag)));
    }
    if parameters.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{}", parameters.join("&"))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_component(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

// ---------------------------------------------------------------------------
// A service.

pub(super) fn service(view: &ServiceView) -> Markup {
    let document = view.document();
    let root = document.to_value();
    let id = document.id();
    let drifting: Vec<&str> = view
        .instances
        .iter()
        .filter(|instance| instance.drift)
        .map(|instance| instance.instance_id.as_str())
        .collect();
    let is_latest = view.latest() == Some(&document.version);
    layout(
        &id.to_string(),
        Section::Services,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href="/" { "Services" } " › " (document.service) }
            h1 { (document.service) " " span.version { (document.version) } }
            p.lead { (document.description) }
            @if !drifting.is_empty() {
                div.banner.warn role="alert" {
                    strong { "Drift: " }
                    (drifting.len()) " of " (view.instances.len()) " instances serve a contract that matches no registered version of "
                    (document.service) " (" (drifting.join(", ")) "). "
                    "Register the contract they run, or redeploy them from a registered one."
                }
            }
            @if !is_latest {
                @if let Some(latest) = view.latest() {
                    p.banner.info {
                        "This is version " (document.version) "; the latest is "
                        a href={ "/services/" (document.service) "/versions/" (latest) } { (latest) } ". "
                        a href={ "/services/" (document.service) "/diff?from=" (document.version) "&to=" (latest) } { "What changed since" } "."
                    }
                }
            }
            dl.meta {
                dt { "Contract" } dd { code { (id) } }
                dt { "Owner" } dd { (document.owner) }
                dt { "Tags" } dd { @if document.tags.is_empty() { "none" } @else { (tag_chips(&document.tags)) } }
                dt { "Compatibility" } dd { (document.compatibility) }
                dt { "Digest" } dd { code.digest { (view.contract.digest) } }
                dt { "Registered" } dd { (utc(view.contract.registered_at_ms)) }
                dt { "As JSON" } dd {
                    a href={ "/v1/services/" (document.service) "/versions/" (document.version) } {
                        code { "/v1/services/" (document.service) "/versions/" (document.version) }
                    }
                }
            }
            nav.toc aria-label="On this page" {
                ul {
                    li { a href="#versions" { "Versions" } }
                    li { a href="#operations" { "Operations (" (document.operations.len()) ")" } }
                    li { a href="#events" { "Events (" (document.events.len()) ")" } }
                    li { a href="#dependencies" { "Consumes and calls" } }
                    li { a href="#instances" { "Instances (" (view.instances.len()) ")" } }
                }
            }
            (versions_section(view))
            (operations_section(view, &root))
            (events_section(view, &root))
            (dependencies_section(document, &root))
            (instances_section(view))
        },
    )
}

fn versions_section(view: &ServiceView) -> Markup {
    let document = view.document();
    let service = &document.service;
    html! {
        section #versions {
            h2 { "Versions" }
            table {
                thead { tr { th scope="col" { "Version" } th scope="col" { "Registered" } th scope="col" { "Digest" } th scope="col" { "Changes" } } }
                tbody {
                    @for (index, info) in view.versions.iter().enumerate().rev() {
                        tr.current[info.version == document.version] {
                            th scope="row" {
                                a href={ "/services/" (service) "/versions/" (info.version) }
                                    aria-current=[(info.version == document.version).then_some("page")] { (info.version) }
                            }
                            td { (utc(info.registered_at_ms)) }
                            td { code.digest { (short_digest(&info.digest)) } }
                            td {
                                @if let Some(previous) = index.checked_sub(1).and_then(|previous| view.versions.get(previous)) {
                                    a href={ "/services/" (service) "/diff?from=" (previous.version) "&to=" (info.version) } {
                                        "diff with " (previous.version)
                                    }
                                } @else { "first version" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn operations_section(view: &ServiceView, root: &serde_json::Value) -> Markup {
    let document = view.document();
    html! {
        section #operations {
            h2 { "Operations" }
            @if document.operations.is_empty() { p.empty { "This contract declares no operations." } }
            @for (name, operation) in &document.operations {
                article.member id={ "op-" (name) } {
                    h3 { code { (name) } }
                    @if let Some(description) = &operation.description { p { (description) } }
                    dl.meta {
                        dt { "Subject" } dd { code { (operation.subject) } }
                        dt { "Idempotent" } dd {
                            @if operation.idempotent { "yes — callers may retry it" } @else { "no" }
                        }
                        dt { "Errors" } dd {
                            @if operation.errors.is_empty() { "only the common codes" }
                            @for (index, code) in operation.errors.iter().enumerate() {
                                @if index > 0 { ", " }
                                code { (code) }
                            }
                        }
                        dt { "Called by" } dd {
                            (contract_links(view.dependents.get(name).map(|answer| answer.callers.as_slice()).unwrap_or_default()))
                        }
                    }
                    div.messages {
                        section {
                            h4 { "Request" }
                            (schema::render(&operation.request, root))
                        }
                        section {
                            h4 { "Response" }
                            (schema::render(&operation.response, root))
                        }
                    }
                }
            }
        }
    }
}

fn events_section(view: &ServiceView, root: &serde_json::Value) -> Markup {
    let document = view.document();
    html! {
        section #events {
            h2 { "Events" }
            @if document.events.is_empty() { p.empty { "This contract publishes no events." } }
            @for (name, event) in &document.events {
                article.member id={ "event-" (name) } {
                    h3 { code { (name) } }
                    @if let Some(description) = &event.description { p { (description) } }
                    dl.meta {
                        dt { "Subject" } dd { code { (event.subject) } }
                        dt { "Consumers" } dd {
                            (contract_links(view.dependents.get(name).map(|answer| answer.consumers.as_slice()).unwrap_or_default()))
                        }
                    }
                    section.message {
                        h4 { "Payload" }
                        (schema::render(&event.payload, root))
                    }
                }
            }
        }
    }
}

fn contract_links(contracts: &[contracts::ContractId]) -> Markup {
    html! {
        @if contracts.is_empty() { "none registered" }
        @for (index, id) in contracts.iter().enumerate() {
            @if index > 0 { ", " }
            a href={ "/services/" (id.service) } { (id.service) } " " span.version { (id.version) }
        }
    }
}

fn dependencies_section(document: &ContractDocument, root: &serde_json::Value) -> Markup {
    let member_url = |service: &ServiceName, anchor: String| format!("/services/{service}#{anchor}");
    html! {
        section #dependencies {
            h2 { "Consumes and calls" }
            @if document.consumes.is_empty() && document.calls.is_empty() {
                p.empty { "This service depends on no other service." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Kind" } th scope="col" { "Of" } th scope="col" { "Expects" } } }
                    tbody {
                        @for consumption in &document.consumes {
                            @let event = &consumption.event;
                            tr {
                                td { "consumes event" }
                                td { a href=(member_url(&event.service, format!("event-{}", event.member))) { code { (event) } } }
                                td {
                                    @if let Some(expects) = &consumption.expects {
                                        (schema::render(expects, root))
                                    } @else { "the producer's schema" }
                                }
                            }
                        }
                        @for call in &document.calls {
                            tr {
                                td { "calls operation" }
                                td { a href=(member_url(&call.service, format!("op-{}", call.member))) { code { (call) } } }
                                td { "the callee's schemas" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn instances_section(view: &ServiceView) -> Markup {
    html! {
        section #instances {
            h2 { "Live instances" }
            @if view.instances.is_empty() {
                p.empty { "No instance is beating right now." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Instance" } th scope="col" { "Version" } th scope="col" { "Healthy" }
                        th scope="col" { "Drift" } th scope="col" { "Last beat" }
                    } }
                    tbody {
                        @for instance in &view.instances {
                            tr {
                                th scope="row" { code { (instance.instance_id) } }
                                td { (instance.contract.version) }
                                td.warn[!instance.healthy] { @if instance.healthy { "yes" } @else { "overdue" } }
                                td.warn[instance.drift] {
                                    @if instance.drift { "⚠ drifting: " code.digest { (short_digest(&instance.digest)) } } @else { "no" }
                                }
                                td { (ago(instance.last_beat_ms_ago)) " (TTL " (ago_span(instance.ttl_ms)) ")" }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The diff.

pub(super) fn diff(view: &DiffView) -> Markup {
    let service = &view.service;
    let title = format!("{service}: changes between versions");
    let (chosen_from, chosen_to) = match &view.comparison {
        Some(comparison) if comparison.swapped => (Some(&comparison.new.version), Some(&comparison.old.version)),
        Some(comparison) => (Some(&comparison.old.version), Some(&comparison.new.version)),
        None => (None, None),
    };
    layout(
        &title,
        Section::Services,
        html! {
            nav.crumbs aria-label="Breadcrumb" {
                a href="/" { "Services" } " › " a href={ "/services/" (service) } { (service) } " › changes"
            }
            h1 { (service) ": changes between versions" }
            form.diff-form action={ "/services/" (service) "/diff" } method="get" {
                label for="from" { "From" }
                select #from name="from" {
                    @for version in &view.versions {
                        option value=(version) selected[Some(version) == chosen_from] { (version) }
                    }
                }
                label for="to" { "to" }
                select #to name="to" {
                    @for version in &view.versions {
                        option value=(version) selected[Some(version) == chosen_to] { (version) }
                    }
                }
                button type="submit" { "Compare" }
            }
            @match &view.comparison {
                None if view.versions.len() < 2 => p.empty { (service) " has a single version; there is nothing to compare yet." },
                None => p.empty { "No version comes before the one asked for; pick two versions to compare." },
                Some(comparison) => (comparison_report(comparison)),
            }
        },
    )
}

fn comparison_report(comparison: &super::Comparison) -> Markup {
    let (old, new) = (&comparison.old, &comparison.new);
    let breaking = comparison
        .changes
        .iter()
        .filter(|change| change.breaking == Some(true))
        .count();
    let undecided = comparison
        .changes
        .iter()
        .filter(|change| change.breaking.is_none())
        .count();
    let mode = comparison.mode.unwrap_or(Mode::Backward);
    html! {
        @if comparison.swapped {
            p.banner.info { "Shown oldest first: from " (old.version) " to " (new.version) "." }
        }
        p {
            "From " a href={ "/services/" (old.service) "/versions/" (old.version) } { (old.version) }
            " to " a href={ "/services/" (new.service) "/versions/" (new.version) } { (new.version) }
            ", judged by " (new.version) "'s policy, " strong { (new.compatibility) } "."
            @if comparison.mode.is_none() {
                " Policy NONE checks nothing; each change is marked as BACKWARD would judge it."
            }
        }
        @if old.version == new.version {
            p.empty { "The same version on both sides: nothing changed." }
        } @else if comparison.changes.is_empty() {
            p.banner.ok { "No changes: the two versions declare the same messages." }
        } @else {
            @if breaking > 0 {
                p.banner.warn role="status" { (breaking) " of " (comparison.changes.len()) " changes break " (mode) "." }
            } @else if undecided > 0 {
                p.banner.info role="status" {
                    "No change breaks " (mode) " for sure; " (undecided) " could not be decided (the strict verdict counts them as breaking)."
                }
            } @else {
                p.banner.ok role="status" {
                    @if comparison.changes.len() == 1 {
                        "Compatible: the one change does not break " (mode) "."
                    } @else {
                        "Compatible: none of the " (comparison.changes.len()) " changes breaks " (mode) "."
                    }
                }
            }
            table.changes {
                caption.visually-hidden { "Changes" }
                thead { tr {
                    th scope="col" { "Role" } th scope="col" { "Member" } th scope="col" { "Code" }
                    th scope="col" { "Pointer" } th scope="col" { "What changed" } th scope="col" { "Breaking" }
                } }
                tbody {
                    @for change in &comparison.changes {
                        (change_row(change))
                    }
                }
            }
        }
    }
}

fn change_row(change: &ContractChange) -> Markup {
    let role = match change.role {
        Role::Contract => "contract",
        Role::Request => "request",
        Role::Response => "response",
        Role::Event => "event",
    };
    let (class, verdict) = match change.breaking {
        Some(true) => ("breaking yes", "yes"),
        Some(false) => ("breaking no", "no"),
        None => ("breaking undecided", "undecided"),
    };
    html! {
        tr {
            td { (role) }
            td { @if let Some(member) = &change.member { code { (member) } } @else { "—" } }
            td { code { (change.change.code) } }
            td { code { (change.change.pointer) } }
            td {
                (change.change.message)
                @if let Some(hint) = &change.change.hint { br; span.hint { (hint) } }
            }
            td class=(class) { (verdict) }
        }
    }
}

// ---------------------------------------------------------------------------
// The graph.

pub(super) fn graph(service: Option<&ServiceName>, graph: &GraphResponse) -> Markup {
    let title = match service {
        Some(service) => format!("Dependencies of {service}"),
        None => "Dependency graph".to_owned(),
    };
    let kind = |kind: EdgeKind| match kind {
        EdgeKind::Calls => "calls",
        EdgeKind::Consumes => "consumes",
    };
    // The member's place on its service's page.
    let member_url = |edge: &GraphEdge| match ContractRef::parse(&edge.reference) {
        Ok(reference) => {
            let anchor = match edge.kind {
                EdgeKind::Calls => "op",
                EdgeKind::Consumes => "event",
            };
            format!("/services/{}#{anchor}-{}", reference.service, reference.member)
        }
        Err(_) => format!("/services/{}", edge.to),
    };
    layout(
        &title,
        Section::Graph,
        html! {
            h1 { (title) }
            p {
                (graph.nodes.len()) " services, " (graph.edges.len()) " dependencies. "
                "Solid arrows go from a caller to the service it calls; dashed arrows follow events from their producer to each consumer. "
                @if service.is_some() { a href="/graph" { "Show every service" } "." }
            }
            figure.graph {
                div #graph-canvas data-title={ (title) ": the same dependencies as the table below" } {
                    noscript { p { "The drawing needs JavaScript; the table below lists every dependency." } }
                }
                figcaption.legend {
                    span.key.calls { "calls" }
                    span.key.consumes { "event flow (producer → consumer)" }
                    span.key.unresolved { "dangling reference" }
                }
            }
            script #graph-data type="application/json" { (PreEscaped(script_json(graph))) }
            @if !graph.warnings.is_empty() {
                section #warnings {
                    h2 { "Warnings" }
                    ul.warnings {
                        @for warning in &graph.warnings { li.warn { (warning) } }
                    }
                }
            }
            section #edges {
                h2 { "Dependencies" }
                @if graph.edges.is_empty() {
                    p.empty { "No service calls another or consumes its events." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Service" } th scope="col" { "Depends by" } th scope="col" { "On" } } }
                        tbody {
                            @for edge in &graph.edges {
                                tr.warn[!edge.resolved] {
                                    td { a href={ "/services/" (edge.from) } { (edge.from) } }
                                    td { (kind(edge.kind)) }
                                    td {
                                        a href=(member_url(edge)) { code { (edge.reference) } }
                                        @if !edge.resolved { " (no registered version declares it)" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p {
                "As text: "
                a href="/v1/graph?format=mermaid" { "Mermaid" } ", "
                a href="/v1/graph?format=dot" { "Graphviz DOT" } ", "
                a href="/v1/graph" { "JSON" } "."
            }
        },
    )
}

/// The graph as JSON that is safe inside `<script type="application/json">`:
/// `<`, `>` and `&` only occur in JSON strings, where their `\u` escapes mean
/// the same, so no `</script>` or `<!--` can end the block early.
fn script_json(graph: &GraphResponse) -> String {
    let json =
        serde_json::to_string(graph).unwrap_or_else(|_| "{\"nodes\":[],\"edges\":[],\"warnings\":[]}".to_owned());
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

// ---------------------------------------------------------------------------
// Small formats.

/// The first hex digits of a `sha256:` digest, enough to tell versions apart.
fn short_digest(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("sha256:{}", hex.get(..12).unwrap_or(hex))
}

/// Milliseconds since the Unix epoch as `2025-01-31 14:05 UTC`.
fn utc(ms: u64) -> String {
    let seconds = ms / 1000;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// Days since 1970-01-01 as a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `850 ms ago`, `12.3 s ago`, `4 min ago`.
fn ago(ms: u64) -> String {
    format!("{} ago", ago_span(ms))
}

fn ago_span(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min", ms / 60_000),
        _ => format!("{} h", ms / 3_600_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_735_689_600_000 + 3_723_000), "2025-01-01 01:02 UTC");
    }

    #[test]
    fn urls_encode_user_text() {
        assert_eq!(catalogue_url(None, None), "/");
        assert_eq!(
            catalogue_url(Some("a b&c"), Some("x/y\"<")),
            "/?q=a%20b%26c&tag=x%2Fy%22%3C"
        );
        assert_eq!(url_component("héllo"), "h%C3%A9llo");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(ago(850), "850 ms ago");
        assert_eq!(ago(12_340), "12.3 s ago");
        assert_eq!(ago_span(240_000), "4 min");
    }
}
