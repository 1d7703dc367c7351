// The soabus registry's web page: filter the catalogue as you type, and draw
// the dependency graph as inline SVG. No libraries and nothing fetched: the
// graph comes embedded in the page as JSON.
(function () {
    "use strict";

    var SVG = "http://www.w3.org/2000/svg";

    // ---------------------------------------------------------------------
    // The catalogue: hide the rows that do not contain every typed word.
    function filterAsYouType() {
        var input = document.querySelector("input[data-filter]");
        if (!input) {
            return;
        }
        var table = document.getElementById(input.getAttribute("data-filter"));
        var status = document.getElementById("filter-status");
        if (!table || !table.tBodies.length) {
            return;
        }
        var rows = Array.prototype.slice.call(table.tBodies[0].rows);
        var initialStatus = status ? status.textContent : "";
        var initialValue = input.value;
        input.addEventListener("input", function () {
            var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
            var shown = 0;
            rows.forEach(function (row) {
                var text = row.getAttribute("data-search") || row.textContent.toLowerCase();
                var match = words.every(function (word) { return text.indexOf(word) >= 0; });
                row.hidden = !match;
                if (match) {
                    shown += 1;
                }
            });
            if (status) {
                status.textContent = input.value === initialValue
                    ? initialStatus
                    : shown + " of " + rows.length + " listed services contain “" + input.value.trim() + "” (press Enter to search everything)";
            }
        });
    }

    // ---------------------------------------------------------------------
    // The graph.
    function element(name, attributes, parent) {
        var node = document.createElementNS(SVG, name);
        Object.keys(attributes || {}).forEach(function (key) {
            node.setAttribute(key, attributes[key]);
        });
        if (parent) {
            parent.appendChild(node);
        }
        return node;
    }

    function text(parent, content, attributes) {
        var node = element("text", attributes, parent);
        node.textContent = content;
        return node;
    }

    // The point where the line from a box's centre towards (tx, ty) leaves the box.
    function boxExit(box, tx, ty, gap) {
        var dx = tx - box.x;
        var dy = ty - box.y;
        var halfWidth = box.width / 2 + gap;
        var halfHeight = box.height / 2 + gap;
        var scale = Math.min(
            dx === 0 ? Infinity : halfWidth / Math.abs(dx),
            dy === 0 ? Infinity : halfHeight / Math.abs(dy)
        );
        if (!isFinite(scale)) {
            return { x: box.x, y: box.y };
        }
        return { x: box.x + dx * scale, y: box.y + dy * scale };
    }

    function drawGraph() {
        var data = document.getElementById("graph-data");
        var canvas = document.getElementById("graph-canvas");
        if (!data || !canvas) {
            return;
        }
        var graph = JSON.parse(data.textContent);

        // Services, plus any endpoint no registered version declares.
        var boxes = {};
        var order = [];
        function addBox(name, latest, missing) {
            if (boxes[name]) {
                return;
            }
            boxes[name] = {
                name: name,
                latest: latest,
                missing: missing,
                width: Math.max(110, name.length * 8.6 + 28),
                height: 46,
            };
            order.push(name);
        }
        graph.nodes.forEach(function (node) { addBox(node.service, node.latest, false); });
        graph.edges.forEach(function (edge) {
            addBox(edge.from, "", true);
            addBox(edge.to, "", true);
        });

        // Arrows follow what flows: a call goes from caller to callee, an
        // event from its producer (`to`) to its consumer (`from`). Several
        // members between the same two services share one arrow.
        var groups = {};
        var groupOrder = [];
        graph.edges.forEach(function (edge) {
            var source = edge.kind === "calls" ? edge.from : edge.to;
            var target = edge.kind === "calls" ? edge.to : edge.from;
            var kind = edge.resolved ? edge.kind : "unresolved";
            var key = kind + " " + source + " " + target;
            if (!groups[key]) {
                groups[key] = { source: source, target: target, kind: kind, members: [] };
                groupOrder.push(key);
            }
            var member = edge.reference.split("#")[1] || edge.reference;
            if (groups[key].members.indexOf(member) < 0) {
                groups[key].members.push(member);
            }
        });

        // Layout: services on a circle, in name order.
        var count = order.length;
        var widest = order.reduce(function (most, name) { return Math.max(most, boxes[name].width); }, 0);
        var radius = count <= 1 ? 0 : Math.max(200, (count * (widest + 50)) / (2 * Math.PI));
        var margin = 30;
        var width = 2 * radius + widest + 2 * margin;
        var height = 2 * radius + 46 + 2 * margin + 30;
        var centreX = width / 2;
        var centreY = height / 2;
        order.forEach(function (name, index) {
            var angle = -Math.PI / 2 + (2 * Math.PI * index) / Math.max(count, 1);
            boxes[name].x = centreX + radius * Math.cos(angle);
            boxes[name].y = centreY + radius * Math.sin(angle);
        });

        var title = canvas.getAttribute("data-title") || "Dependency graph";
        var svg = element("svg", {
            viewBox: "0 0 " + Math.ceil(width) + " " + Math.ceil(height),
            width: Math.ceil(width),
            height: Math.ceil(height),
            role: "img",
            "aria-label": title,
        });
        element("title", {}, svg).textContent = title;
        var defs = element("defs", {}, svg);
        ["calls", "consumes", "unresolved"].forEach(function (kind) {
            var marker = element("marker", {
                id: "arrow-" + kind,
                viewBox: "0 0 10 10",
                refX: 9,
                refY: 5,
                markerWidth: 8,
                markerHeight: 8,
                orient: "auto-start-reverse",
            }, defs);
            element("path", { d: "M0,0 L10,5 L0,10 z" }, marker);
        });

        var edgeLayer = element("g", { class: "edges" }, svg);
        var nodeLayer = element("g", { class: "nodes" }, svg);
        // The drawing replaces the no-script note (the table below stays for
        // screen readers); it is in the page from now on so that labels can
        // be measured.
        while (canvas.firstChild) {
            canvas.removeChild(canvas.firstChild);
        }
        canvas.appendChild(svg);

        // Labels go where they overlap no box and no earlier label.
        var taken = order.map(function (name) {
            var box = boxes[name];
            return { x: box.x - box.width / 2, y: box.y - box.height / 2, width: box.width, height: box.height };
        });
        function overlap(a, b) {
            var width = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x) + 3;
            var height = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y) + 3;
            return width > 0 && height > 0 ? width * height : 0;
        }
        function placeLabel(label, candidates) {
            var best = null;
            candidates.some(function (point) {
                label.setAttribute("x", point.x);
                label.setAttribute("y", point.y);
                var box = label.getBBox();
                var cost = taken.reduce(function (sum, other) { return sum + overlap(box, other); }, 0);
                if (best === null || cost < best.cost) {
                    best = { point: point, box: box, cost: cost };
                }
                return cost === 0;
            });
            label.setAttribute("x", best.point.x);
            label.setAttribute("y", best.point.y);
            taken.push(best.box);
        }
        var pairs = {};
        var edgeElements = [];
        groupOrder.forEach(function (key) {
            var group = groups[key];
            var from = boxes[group.source];
            var to = boxes[group.target];
            var g = element("g", {
                class: "edge " + group.kind,
                "data-source": group.source,
                "data-target": group.target,
            }, edgeLayer);
            edgeElements.push(g);
            element("title", {}, g).textContent =
                group.source + " → " + group.target + " (" + group.kind + "): " + group.members.join(", ");
            var label = group.members.join(", ");
            if (group.source === group.target) {
                // A service consuming its own events: a loop above its box.
                var top = from.y - from.height / 2;
                element("path", {
                    d: "M" + (from.x - 20) + "," + top + " C" + (from.x - 40) + "," + (top - 50) + " " +
                        (from.x + 40) + "," + (top - 50) + " " + (from.x + 20) + "," + (top - 2),
                    "marker-end": "url(#arrow-" + group.kind + ")",
                }, g);
                text(g, label, { x: from.x, y: top - 42, "text-anchor": "middle" });
                return;
            }
            // Arrows between the same two services bend further apart; the
            // reverse direction bends to the other side on its own.
            var pairKey = group.source + " " + group.target;
            var rank = pairs[pairKey] || 0;
            pairs[pairKey] = rank + 1;
            var dx = to.x - from.x;
            var dy = to.y - from.y;
            var length = Math.sqrt(dx * dx + dy * dy) || 1;
            var bend = Math.max(30, length * 0.16) * (1 + rank * 0.8);
            var controlX = (from.x + to.x) / 2 - (dy / length) * bend;
            var controlY = (from.y + to.y) / 2 + (dx / length) * bend;
            var start = boxExit(from, controlX, controlY, 2);
            var end = boxExit(to, controlX, controlY, 4);
            element("path", {
                d: "M" + start.x + "," + start.y + " Q" + controlX + "," + controlY + " " + end.x + "," + end.y,
                "marker-end": "url(#arrow-" + group.kind + ")",
            }, g);
            // The label sits on the curve, at its middle if that place is free.
            var candidates = [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78].map(function (t) {
                return {
                    x: (1 - t) * (1 - t) * start.x + 2 * t * (1 - t) * controlX + t * t * end.x,
                    y: (1 - t) * (1 - t) * start.y + 2 * t * (1 - t) * controlY + t * t * end.y + 4,
                };
            });
            placeLabel(text(g, label, { "text-anchor": "middle" }), candidates);
        });

        var nodeElements = [];
        order.forEach(function (name) {
            var box = boxes[name];
            var link = element("a", { href: "/services/" + encodeURIComponent(name) }, nodeLayer);
            var g = element("g", {
                class: "node" + (box.missing ? " missing" : ""),
                "data-service": name,
            }, link);
            nodeElements.push(g);
            element("title", {}, g).textContent = box.missing
                ? name + ": referenced, but not registered"
                : name + " " + box.latest;
            element("rect", {
                x: box.x - box.width / 2,
                y: box.y - box.height / 2,
                width: box.width,
                height: box.height,
                rx: 8,
            }, g);
            text(g, name, { x: box.x, y: box.y - 2, "text-anchor": "middle" });
            text(g, box.missing ? "not registered" : box.latest, {
                x: box.x,
                y: box.y + 14,
                "text-anchor": "middle",
                class: "sub",
            });
            // Hovering a service dims what does not touch it.
            function focus() {
                svg.classList.add("focused");
                g.classList.add("near");
                edgeElements.forEach(function (edge) {
                    var source = edge.getAttribute("data-source");
                    var target = edge.getAttribute("data-target");
                    if (source === name || target === name) {
                        edge.classList.add("near");
                        nodeElements.forEach(function (other) {
                            var service = other.getAttribute("data-service");
                            if (service === source || service === target) {
                                other.classList.add("near");
                            }
                        });
                    }
                });
            }
            function blur() {
                svg.classList.remove("focused");
                svg.querySelectorAll(".near").forEach(function (near) { near.classList.remove("near"); });
            }
            link.addEventListener("mouseenter", focus);
            link.addEventListener("mouseleave", blur);
            link.addEventListener("focus", focus);
            link.addEventListener("blur", blur);
        });

        canvas.setAttribute("data-drawn", "true");
    }

    function start() {
        filterAsYouType();
        drawGraph();
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();
