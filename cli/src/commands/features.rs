//! `features`: the feature flags, their state and default (restic
//! cmd_features.go), as a table.

use crate::args::PositionalArgs;
use crate::context::Context;
use crate::errors::fatal;
use crate::features::FEATURES;
use crate::output::Table;

pub fn run(ctx: &Context, args: &PositionalArgs) -> anyhow::Result<()> {
    if !args.args.is_empty() {
        return Err(fatal("the feature command expects no arguments").into());
    }
    let mut table = Table::new(&["Name", "Type", "Default", "Description"]);
    let mut features: Vec<_> = FEATURES.iter().collect();
    features.sort_by_key(|f| f.name);
    for feature in features {
        table.add_row(vec![
            vec![feature.name.to_string()],
            vec![feature.phase.name().to_string()],
            vec![feature.phase.default_enabled().to_string()],
            vec![feature.description.to_string()],
        ]);
    }
    ctx.printer.important("All Feature Flags:");
    ctx.printer.important(&table.render());
    Ok(())
}
