"""What every agentwatch dashboard shares: selectors, variables, links, thresholds and panel shapes.

Why helpers over raw builders: grafana/dashboard-linter's rules (templated datasource, job and
instance matchers on every selector, ``$__rate_interval`` in every range, a unit and a description
on every panel) are easiest to keep when there is one way to write a selector and one way to make
a panel. The tests lint the generated JSON anyway, so a panel written another way is caught.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import bargauge, common, heatmap, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import gauge as gauge_panel
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models import prometheus as prometheus_model

from agentwatch_dashboards.thresholds import Thresholds

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: The tag every agentwatch dashboard carries: the dashboards link to each other through it.
TAG = "agentwatch"
RATE_INTERVAL = "$__rate_interval"

#: Every raw selector names the job and the instance (dashboard-linter's target-job/instance rules).
SCOPE = ('job=~"$job"', 'instance=~"$instance"')
#: Container metrics also follow the service and container variables.
CONTAINERS = ('compose_service=~"$service"', 'container=~"$container"')

Steps = tuple[tuple[float | None, str], ...]
GREEN, ORANGE, RED, DARK_RED, BLUE = "green", "orange", "red", "dark-red", "blue"


def sel(metric: str, *matchers: str) -> str:
    """``metric{job=~"$job", instance=~"$instance", ...}``."""
    return f"{metric}{{{', '.join((*SCOPE, *matchers))}}}"


def rate(metric: str, *matchers: str) -> str:
    return f"rate({sel(metric, *matchers)}[{RATE_INTERVAL}])"


def increase(metric: str, *matchers: str) -> str:
    return f"increase({sel(metric, *matchers)}[{RATE_INTERVAL}])"


def quantile(q: float, histogram: str, by: str, *matchers: str, once: str = "") -> str:
    """The ``q`` quantile of a histogram's rate, per ``by`` (``le`` is added); ``once``: see :func:`once`."""
    keep = f"{by}, le" if by else "le"
    buckets = rate(histogram + "_bucket", *matchers)
    if once:
        buckets = f"max by ({once}, le) ({buckets})"
    return f"histogram_quantile({q:g}, sum by ({keep}) ({buckets}))"


def once(expr: str, by: str) -> str:
    """One series per ``by`` (an agent server's identity, never ``instance``).

    Why: an agent server can be seen twice with the same figures: probed by the exporter and scraped
    directly (its agentwatch.instrument /metrics, as the compose stack does). Summing both would
    double it; the max of the two is the figure.
    """
    return f"max by ({by}) ({expr})"


def rising(*values: float) -> Steps:
    """Green below the first value, then orange, red, dark red: higher is worse."""
    return ((None, GREEN), *zip(values, (ORANGE, RED, DARK_RED), strict=False))


def falling(ok: float, warn: float | None = None) -> Steps:
    """Red below ``warn`` (or ``ok``), orange up to ``ok``, green from ``ok``: lower is worse."""
    middle = ((warn, ORANGE),) if warn is not None else ()
    return ((None, RED), *middle, (ok, GREEN))


def flat(color: str = GREEN) -> Steps:
    return ((None, color),)


@dataclass(frozen=True)
class Query:
    """One PromQL target and its legend (stats, gauges, bars and tables ask for the latest value only)."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Look:
    """What every panel has: a title, a description, a unit, its thresholds and runbook, its size."""

    title: str
    description: str
    unit: str
    queries: Sequence[Query]
    steps: Steps = field(default_factory=flat)
    runbook: str = ""
    width: int = 8
    height: int = 8
    minimum: float | None = None
    maximum: float | None = None
    #: Shown instead of "No data" when nothing matches and that is good news (no alert firing).
    no_value: str = ""


def _targets(queries: Sequence[Query], fmt: prometheus_model.PromQueryFormat | None = None,
             instant: bool = False) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    out: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for i, query in enumerate(queries):
        target = (prometheus.Dataquery().ref_id(chr(ord("A") + i)).datasource(DATASOURCE).expr(query.expr)
                  .legend_format(query.legend or "__auto"))
        target = target.instant() if instant else target.range()
        if fmt is not None:
            target = target.format(fmt)
        out.append(target)
    return out


def _thresholds(steps: Steps) -> dash.ThresholdsConfig:
    return (dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=v, color=c) for v, c in steps]))


def _runbook_links(look: Look, thresholds: Thresholds) -> list[cogbuilder.Builder[model.DashboardLink]]:
    if not look.runbook:
        return []
    return [dash.DashboardLink(f"Runbook: {look.runbook}").type(model.DashboardLinkType.LINK)
            .url(thresholds.runbook(look.runbook)).target_blank(True)]


class _Panel(Protocol):
    """The part of the SDK's panel builders that every panel kind shares."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: model.DataSourceRef) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def thresholds(self, thresholds: cogbuilder.Builder[model.ThresholdsConfig]) -> Self: ...
    def links(self, links: list[cogbuilder.Builder[model.DashboardLink]]) -> Self: ...
    def min(self, min_val: float) -> Self: ...
    def max(self, max_val: float) -> Self: ...
    def no_value(self, no_value: str) -> Self: ...


P = TypeVar("P", bound=_Panel)


def _dress(panel: P, look: Look, thresholds: Thresholds) -> P:
    """Title, description, datasource, unit, size, thresholds and links: the same on every panel."""
    p = (panel.title(look.title).description(look.description).datasource(DATASOURCE)
         .unit(look.unit).span(look.width).height(look.height).thresholds(_thresholds(look.steps))
         .links(_runbook_links(look, thresholds)))
    if look.minimum is not None:
        p = p.min(look.minimum)
    if look.maximum is not None:
        p = p.max(look.maximum)
    if look.no_value:
        p = p.no_value(look.no_value)
    return p


@dataclass(frozen=True)
class Kit:
    """Panel makers bound to the thresholds (for runbook URLs)."""

    thresholds: Thresholds

    def timeseries(self, look: Look, lines: bool = False, stack: bool = False, bars: bool = False,
                   legend_table: bool = False) -> timeseries.Panel:
        """A time series; ``lines`` draws the thresholds as dashed lines (the alert levels)."""
        panel = _dress(timeseries.Panel(), look, self.thresholds)
        panel = panel.targets(_targets(look.queries)).fill_opacity(10 if not bars else 80).line_width(1)
        panel = panel.thresholds_style(common.GraphThresholdsStyleConfig().mode(
            common_model.GraphThresholdsStyleMode.DASHED if lines else common_model.GraphThresholdsStyleMode.OFF))
        if stack:
            panel = panel.stacking(common.StackingConfig().mode(common_model.StackingMode.NORMAL))
        if bars:
            panel = panel.draw_style(common_model.GraphDrawStyle.BARS)
        legend = common.VizLegendOptions().show_legend(True).placement(common_model.LegendPlacement.BOTTOM)
        if legend_table:
            legend = legend.display_mode(common_model.LegendDisplayMode.TABLE).calcs(["lastNotNull", "max"])
        else:
            legend = legend.display_mode(common_model.LegendDisplayMode.LIST)
        return panel.legend(legend).tooltip(common.VizTooltipOptions().mode(common_model.TooltipDisplayMode.MULTI)
                                            .sort(common_model.SortOrder.DESCENDING))

    def stat(self, look: Look, background: bool = True) -> stat.Panel:
        panel = _dress(stat.Panel(), look, self.thresholds)
        return (panel.targets(_targets(look.queries, instant=True))
                .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
                .color_mode(common_model.BigValueColorMode.BACKGROUND if background
                            else common_model.BigValueColorMode.VALUE)
                .graph_mode(common_model.BigValueGraphMode.NONE))

    def gauge(self, look: Look) -> gauge_panel.Panel:
        panel = _dress(gauge_panel.Panel(), look, self.thresholds)
        return (panel.targets(_targets(look.queries, instant=True))
                .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
                .show_threshold_markers(True))

    def bars(self, look: Look) -> bargauge.Panel:
        """Horizontal bars of the latest values, coloured by threshold (top N, states)."""
        panel = _dress(bargauge.Panel(), look, self.thresholds)
        return (panel.targets(_targets(look.queries, instant=True))
                .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
                .orientation(common_model.VizOrientation.HORIZONTAL)
                .display_mode(common_model.BarGaugeDisplayMode.GRADIENT).show_unfilled(True))

    def table(self, look: Look, hide: Iterable[str] = ("Time",)) -> table.Panel:
        """The latest value of each series, one row per label set."""
        panel = _dress(table.Panel(), look, self.thresholds)
        organize = model.DataTransformerConfig(id_val="organize",
                                               options={"excludeByName": dict.fromkeys(hide, True)})
        return (panel.targets(_targets(look.queries, prometheus_model.PromQueryFormat.TABLE, instant=True))
                .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
                .with_transformation(organize))

    def heatmap(self, look: Look) -> heatmap.Panel:
        """Buckets over time; the queries return ``le`` buckets (cumulative, as Prometheus keeps them)."""
        panel = _dress(heatmap.Panel(), look, self.thresholds)
        return (panel.targets(_targets(look.queries, prometheus_model.PromQueryFormat.HEATMAP))
                .calculate(False)
                .y_axis(heatmap.YAxisConfig().unit(look.unit))
                .cell_values(heatmap.CellValues().unit("short"))
                .color(heatmap.HeatmapColorOptions().mode(heatmap_model.HeatmapColorMode.SCHEME)
                       .scheme("Oranges").fill("dark-orange").scale(heatmap_model.HeatmapColorScale.EXPONENTIAL)
                       .exponent(0.5).steps(64).reverse(False))
                .rows_frame(heatmap.RowsHeatmapOptions().layout(common_model.HeatmapCellLayout.LE))
                .show_value(common_model.VisibilityMode.AUTO)
                .mode(common_model.TooltipDisplayMode.SINGLE).show_y_histogram()
                .show_legend())


# -- variables -------------------------------------------------------------------------------------


def datasource_variable() -> dash.DatasourceVariable:
    """dashboard-linter's template-datasource-rule: named ``datasource``, labelled ``Data source``."""
    return dash.DatasourceVariable("datasource").label("Data source").type("prometheus")


def query_variable(name: str, label: str, query: str, all_value: str = ".+",
                   description: str = "") -> dash.QueryVariable:
    """A multi-select query variable that reloads on time change, defaulting to All."""
    variable = (dash.QueryVariable(name).label(label).query(query).datasource(DATASOURCE).multi(True)
                .include_all(True).all_value(all_value).refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(model.VariableSort.ALPHABETICAL_ASC)
                .current(model.VariableOption(selected=True, text="All", value="$__all")))
    return variable.description(description) if description else variable


def job_and_instance(*metrics: str) -> list[dash.QueryVariable]:
    """The ``job`` and ``instance`` variables (dashboard-linter: labelled Job/Instance, allValue ``.+``),
    from the jobs and targets that export any of ``metrics``."""
    if len(metrics) == 1:
        source, scoped = metrics[0], f'{metrics[0]}{{job=~"$job"}}'
    else:
        names = "|".join(metrics)
        source, scoped = f'{{__name__=~"{names}"}}', f'{{__name__=~"{names}", job=~"$job"}}'
    return [
        query_variable("job", "Job", f"label_values({source}, job)",
                       description="The Prometheus jobs that scrape agentwatch (and agent servers instrumented "
                                   "with agentwatch.instrument)."),
        query_variable("instance", "Instance", f"label_values({scoped}, instance)",
                       description="A scrape target: an agentwatch exporter (one per host) or an agent server."),
    ]


def service_and_container() -> list[dash.QueryVariable]:
    """Compose service and container; ``.*`` as All so containers outside compose are kept."""
    info = "agentwatch_container_info"
    return [
        query_variable("service", "Compose service",
                       f'label_values({info}{{job=~"$job", instance=~"$instance"}}, compose_service)', ".*",
                       "The com.docker.compose.service label (empty outside compose)."),
        query_variable("container", "Container",
                       f'label_values({info}{{job=~"$job", instance=~"$instance", '
                       f'compose_service=~"$service"}}, container)', ".*", "Container name."),
    ]


def server_variables() -> list[dash.QueryVariable]:
    """Compose service, container and agent server, chained through ``agentwatch_app_info`` (the join)."""
    info = 'agentwatch_app_info{job=~"$job", instance=~"$instance"'
    return [
        query_variable("service", "Compose service", f"label_values({info}}}, compose_service)", ".*",
                       "The compose service an agent server runs in (empty when the probe config does not say)."),
        query_variable("container", "Container",
                       f'label_values({info}, compose_service=~"$service"}}, container)', ".*",
                       "The container an agent server runs in (empty when the probe config does not say)."),
        query_variable("server", "Agent server",
                       f'label_values({info}, compose_service=~"$service", container=~"$container"}}, server)',
                       ".*", "An agent server the exporter probes (the probe's name)."),
    ]


# -- the dashboard -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    title: str
    panels: Sequence[cogbuilder.Builder[model.Panel]]
    collapsed: bool = False


def board(thresholds: Thresholds, uid: str, title: str, description: str, tags: Sequence[str],
          variables: Sequence[cogbuilder.Builder[model.VariableModel]], rows: Sequence[Row]) -> model.Dashboard:
    """The dashboard with its variables, links to the other agentwatch dashboards and the runbooks, and ids."""
    builder = (dash.Dashboard(title).uid(uid).description(description).tags([TAG, *tags]).editable()
               .refresh("30s").time("now-6h", "now").timezone("browser")
               .tooltip(model.DashboardCursorSync.CROSSHAIR)
               .link(dash.DashboardLink("agentwatch").type(model.DashboardLinkType.DASHBOARDS).tags([TAG])
                     .as_dropdown(False).include_vars(True).keep_time(True)
                     .tooltip("The other agentwatch dashboards"))
               .link(dash.DashboardLink("Runbooks").type(model.DashboardLinkType.LINK).url(thresholds.runbook())
                     .icon("doc").target_blank(True).tooltip("What to do when an agentwatch alert fires"))
               .with_variable(datasource_variable()))
    for variable in variables:
        builder = builder.with_variable(variable)
    for row in rows:
        if row.collapsed:
            folded = dash.Row(row.title).collapsed(True)
            for panel in row.panels:
                folded = folded.with_panel(panel)
            builder = builder.with_row(folded)
        else:
            builder = builder.with_row(dash.Row(row.title))
            for panel in row.panels:
                builder = builder.with_panel(panel)
    built = builder.build()
    _number(built)
    return built


def _number(built: model.Dashboard) -> None:
    """Stable panel ids in layout order (Grafana needs them unique; links and alerts use them)."""
    next_id = 1
    for panel in built.panels or []:
        panel.id_val = next_id
        next_id += 1
        for inner in getattr(panel, "panels", None) or []:
            inner.id_val = next_id
            next_id += 1
