//! Human tables or JSON.

use serde_json::Value;

pub struct Out {
    pub json: bool,
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

impl Out {
    /// One object: `key  value` lines, or one JSON line.
    pub fn record(&self, v: &Value) {
        if self.json {
            println!("{v}");
            return;
        }
        if let Value::Object(m) = v {
            let w = m.keys().map(|k| k.len()).max().unwrap_or(0);
            for (k, val) in m {
                match val {
                    Value::Object(inner) => {
                        println!("{k:w$}");
                        for (ik, iv) in inner {
                            println!("  {ik:w$}  {}", cell(iv));
                        }
                    }
                    _ => println!("{k:w$}  {}", cell(val)),
                }
            }
        } else {
            println!("{}", cell(v));
        }
    }

    /// Rows of objects as an aligned table, or a JSON array.
    pub fn table(&self, cols: &[&str], rows: &[Value]) {
        if self.json {
            println!("{}", Value::Array(rows.to_vec()));
            return;
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| cols.iter().map(|c| cell(&r[*c])).collect())
            .collect();
        let widths: Vec<usize> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells
                    .iter()
                    .map(|r| r[i].len())
                    .max()
                    .unwrap_or(0)
                    .max(c.len())
            })
            .collect();
        let line = |vals: Vec<String>| {
            let s: Vec<String> = vals
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:w$}"))
                .collect();
            println!("{}", s.join("  ").trim_end());
        };
        line(cols.iter().map(|c| c.to_uppercase()).collect());
        for r in cells {
            line(r);
        }
    }
}
