//! Writes the CRD manifests to `crds/generated/` (or prints them with `--stdout`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let docs = custody_crds::generate::crd_documents()?;
    let reports = custody_crds::generate::report_crd_documents()?;
    if std::env::args().any(|a| a == "--stdout") {
        for (_, yaml) in docs {
            print!("---\n{yaml}");
        }
        return Ok(());
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("generated");
    std::fs::create_dir_all(&dir)?;
    for (name, yaml) in docs {
        std::fs::write(dir.join(name), yaml)?;
        eprintln!("wrote crds/generated/{name}");
    }
    let dir = dir.join("reports");
    std::fs::create_dir_all(&dir)?;
    for (name, yaml) in reports {
        std::fs::write(dir.join(name), yaml)?;
        eprintln!("wrote crds/generated/reports/{name}");
    }
    Ok(())
}
