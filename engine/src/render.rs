//! Drawings of a graph: Mermaid flowcharts and Graphviz DOT.

use crate::graph::{END, Graph, START};

fn quote_label(text: &str) -> String {
    text.replace('"', "'")
}

/// A Mermaid `flowchart TD`. Conditional edges carry their condition; joins are drawn as a
/// dotted edge from every source.
pub fn mermaid(graph: &Graph) -> String {
    let mut out = String::from("flowchart TD\n");
    out.push_str(&format!("    {START}([START])\n    {END}([END])\n"));
    for name in graph.node_names() {
        let kind = graph.node_kind(name).unwrap_or("node");
        out.push_str(&format!(
            "    {}[\"{}<br/><i>{}</i>\"]\n",
            id(name),
            quote_label(name),
            kind
        ));
    }
    for edge in graph.edges() {
        let join = edge.from.len() > 1;
        for from in &edge.from {
            let arrow = if join || edge.goto {
                "-.->".to_string()
            } else {
                "-->".to_string()
            };
            let label = match (&edge.label, edge.default, join) {
                (Some(l), _, _) => format!("|\"{}\"|", quote_label(l)),
                (None, true, _) => "|default|".to_string(),
                (None, false, true) => "|join|".to_string(),
                (None, false, false) if edge.goto => "|goto|".to_string(),
                _ => String::new(),
            };
            out.push_str(&format!(
                "    {} {arrow}{label} {}\n",
                id(from),
                id(&edge.to)
            ));
        }
    }
    out
}

/// A Graphviz `digraph`.
pub fn dot(graph: &Graph) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n    rankdir=TB;\n",
        quote_label(graph.name())
    );
    out.push_str(&format!(
        "    \"{START}\" [shape=oval];\n    \"{END}\" [shape=oval];\n"
    ));
    for name in graph.node_names() {
        let kind = graph.node_kind(name).unwrap_or("node");
        out.push_str(&format!(
            "    \"{}\" [shape=box, label=\"{}\\n({kind})\"];\n",
            quote_label(name),
            quote_label(name)
        ));
    }
    for edge in graph.edges() {
        let join = edge.from.len() > 1;
        for from in &edge.from {
            let mut attrs = Vec::new();
            if let Some(l) = &edge.label {
                attrs.push(format!("label=\"{}\"", quote_label(l)));
            } else if edge.default {
                attrs.push("label=\"default\"".to_string());
            } else if edge.goto {
                attrs.push("label=\"goto\"".to_string());
            }
            if join || edge.goto {
                attrs.push("style=dashed".to_string());
            }
            let attrs = if attrs.is_empty() {
                String::new()
            } else {
                format!(" [{}]", attrs.join(", "))
            };
            out.push_str(&format!(
                "    \"{}\" -> \"{}\"{attrs};\n",
                quote_label(from),
                quote_label(&edge.to),
            ));
        }
    }
    out.push_str("}\n");
    out
}

fn id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
