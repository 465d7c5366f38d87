//! `restore-chain`: flatten an OpenNebula backup chain; the work is image
//! mode's ([`crate::image_mode::run_restore_chain`]).

use crate::context::Context;
use crate::image_args::RestoreChainArgs;

pub fn run(ctx: &Context, args: &RestoreChainArgs) -> anyhow::Result<()> {
    crate::image_mode::run_restore_chain(ctx, args)
}
