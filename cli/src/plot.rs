//! The evaluation as a PNG: mean time to target against budget per scheduler (left), and the DRL
//! agent's functions and memory per epoch on one job (right).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use siren_scheduler::eval::EvalReport;

use crate::Failure;

/// Debian's `fonts-dejavu-core`; plotters rasterises it itself, so no font library is linked.
const FONT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn register_sans() -> Result<(), Failure> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = FONT_FILES
                .iter()
                .find_map(|path| std::fs::read(path).ok())
                .ok_or_else(|| {
                    format!(
                        "no font for the chart: install Debian's fonts-dejavu-core (looked for {})",
                        FONT_FILES.join(", ")
                    )
                })?;
            register_font(
                "sans-serif",
                FontStyle::Normal,
                Box::leak(bytes.into_boxed_slice()),
            )
            .map_err(|_| "the DejaVu Sans file is not a usable font".to_string())
        })
        .clone()
        .map_err(|message| anyhow!(message).into())
}

fn drawing(error: impl std::fmt::Display) -> Failure {
    anyhow!("cannot draw the chart: {error}").into()
}

pub fn plot_evaluation(report: &EvalReport, path: &Path) -> Result<(), Failure> {
    register_sans()?;
    let root = BitMapBackend::new(path, (1600, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let (left, right) = root.split_horizontally(860);
    budget_chart(report, &left)?;
    trace_chart(report, &right)?;
    root.present()
        .map_err(|e| anyhow!("cannot write the chart to {}: {e}", path.display()))?;
    Ok(())
}

fn budget_chart(
    report: &EvalReport,
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
) -> Result<(), Failure> {
    let factors = &report.config.budget_factors;
    let (x_min, x_max) = factors
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), f| (lo.min(*f), hi.max(*f)));
    let y_max = report
        .by_budget
        .iter()
        .flat_map(|s| s.mean_time_to_target.iter().copied())
        .filter(|t| t.is_finite())
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption("Mean time to target by budget", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x_min..x_max, 0.0..y_max * 1.1)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("budget (x the cheapest static way to the target)")
        .y_desc("simulated seconds to target")
        .draw()
        .map_err(drawing)?;
    for (i, series) in report.by_budget.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = series
            .budget_factors
            .iter()
            .zip(&series.mean_time_to_target)
            .filter(|(_, t)| t.is_finite())
            .map(|(f, t)| (*f, *t))
            .collect();
        let width = if series.scheduler == "drl" { 4 } else { 2 };
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))
            .map_err(drawing)?
            .label(series.scheduler.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(drawing)?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(drawing)?;
    Ok(())
}

fn trace_chart(
    report: &EvalReport,
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
) -> Result<(), Failure> {
    let Some(trace) = &report.drl_trace else {
        area.draw(&Text::new(
            "no DRL trace in this evaluation",
            (40, 40),
            ("sans-serif", 20),
        ))
        .map_err(drawing)?;
        return Ok(());
    };
    let epochs = trace.functions.len().max(1);
    let max_functions = trace.functions.iter().copied().max().unwrap_or(1).max(1);
    let max_memory = trace.memory_mb.iter().copied().max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "DRL agent on job {}: budget ${:.4}, target {:.1}%",
                trace.job_seed,
                trace.budget_usd,
                trace.target_accuracy * 100.0
            ),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .right_y_label_area_size(80)
        .build_cartesian_2d(0u32..epochs as u32 + 1, 0u32..max_functions + 1)
        .map_err(drawing)?
        .set_secondary_coord(0u32..epochs as u32 + 1, 0u32..max_memory + max_memory / 10);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("functions")
        .draw()
        .map_err(drawing)?;
    chart
        .configure_secondary_axes()
        .y_desc("memory per function (MB)")
        .draw()
        .map_err(drawing)?;
    let functions: Vec<(u32, u32)> = trace
        .functions
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u32 + 1, *n))
        .collect();
    let memory: Vec<(u32, u32)> = trace
        .memory_mb
        .iter()
        .enumerate()
        .map(|(i, m)| (i as u32 + 1, *m))
        .collect();
    chart
        .draw_series(LineSeries::new(functions, BLUE.stroke_width(3)))
        .map_err(drawing)?
        .label("functions")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(3)));
    chart
        .draw_secondary_series(LineSeries::new(memory, RED.stroke_width(3)))
        .map_err(drawing)?
        .label("memory (MB)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(3)));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(drawing)?;
    Ok(())
}
