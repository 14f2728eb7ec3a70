"""The VLA's language side: its text tokenizer and its causal language model, from a hub id, a local directory
or a config, with full fine-tuning, LoRA (peft) or a frozen model, and 8/4-bit loading (bitsandbytes: CUDA, and the
CPU since bitsandbytes 0.46, where 4-bit needs layers at least 64 wide).

Offline default: a byte-level BPE tokenizer built in code (``tokenizers``; no files, no download) whose vocabulary
is 4 special tokens, the 256 byte symbols, merges learned from a built-in set of robot instructions and 256
reserved action tokens at the end (so OpenVLA's ``id = vocab_size - bin`` never collides with text), and a small
Llama built from ``LlamaConfig`` with random weights. With ``lm.pretrained`` (or ``lm.tokenizer``) the tokenizer
is ``AutoTokenizer``'s and the action ids are the last 256 of its vocabulary, overwriting rarely used BPE tokens
exactly as OpenVLA does with Llama 2's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
N_ACTION_TOKENS = 256
OPENVLA_PROMPT = "In: What action should the robot take to {instruction}?\nOut:"
LM_TRAIN_MODES = ("full", "lora", "frozen")  # and "auto", resolved by the VLA (policy.resolve_train_modes)
QUANTIZATION = (None, "8bit", "4bit")

# the offline default: a Llama small enough to train from scratch on a CPU
TINY_LLAMA = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}


@dataclass
class LanguageModelConfig:
    """``policy.lm``: which causal LM and how it trains."""

    pretrained: str | None = None  # hub id or local directory (AutoModelForCausalLM); null: built from `model`
    tokenizer: str | None = None  # hub id or directory for AutoTokenizer; null: pretrained's, else the byte tokenizer
    model_type: str = "llama"  # when built from config: the transformers model type (AutoConfig.for_model)
    model: dict = field(default_factory=dict)  # config overrides when built from config (default: TINY_LLAMA)
    train: str = "full"  # full | lora | frozen | auto (openvla preset: lora with pretrained weights, else full)
    lora_rank: int = 32  # OpenVLA's fine-tuning script: r 32, alpha 16, dropout 0, every linear layer
    lora_alpha: int = 16  # LoRA scaling (the update is multiplied by alpha / rank)
    lora_dropout: float = 0.0  # dropout on the adapters' input
    quantization: str | None = None  # null | 8bit | 4bit: bitsandbytes (>= 0.46 on the CPU), needs `pretrained`
    dtype: str | None = None  # load dtype for pretrained weights (bfloat16 | float16 | float32); null: float32


# Instructions in the style of Open-X datasets: the built-in tokenizer's merges are learned from these (and the
# prompt), so common robot-instruction words are one token each; anything else still encodes, byte by byte.
INSTRUCTION_CORPUS = (
    "lift the red cube",
    "stack the red cube on the green cube",
    "put the can in its bin",
    "pick up the blue block and place it in the drawer",
    "open the top drawer",
    "close the bottom drawer",
    "close the microwave door",
    "push the button",
    "press the green button",
    "move the spoon to the left of the pot",
    "put the carrot on the plate",
    "wipe the table with the sponge",
    "pour water into the cup",
    "fold the towel",
    "turn on the faucet",
    "turn off the stove",
    "grasp the handle",
    "place the bowl in the sink",
    "pick up the yellow sponge",
    "put the eggplant into the basket",
    "slide the block to the right",
    "knock over the bottle",
    "flip the pot upright",
    "put the lid on the pan",
    "insert the peg into the hole",
    "hang the mug on the rack",
    "take the apple out of the box",
    "put the banana next to the orange",
    "move the cloth to the top left corner",
    "put the marker in the cup",
    "unfold the cloth",
    "sweep the beans",
    "put the corn in the pot",
    "stack the cups",
    "pick up the coke can",
    "place the spatula on the cutting board",
    "open the cabinet",
    "put the black bowl on the stove",
    "put both the soup and the sauce in the basket",
    "put the white mug on the left plate",
    "turn the knob",
    "pick up the object and lift it",
)


def default_tokenizer():
    """The offline text tokenizer: byte-level BPE whose merges are learned (in milliseconds, deterministically)
    from :data:`INSTRUCTION_CORPUS` and the OpenVLA prompt, then 256 reserved action tokens at the end of the
    vocabulary. Any text encodes losslessly (bytes are the base alphabet); the prompt for "lift the red cube" is
    17 tokens instead of 64 bytes, a sequence length close to what Llama 2's tokenizer gives."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [OPENVLA_PROMPT.format(instruction=text) for text in INSTRUCTION_CORPUS]
    trainer = trainers.BpeTrainer(
        vocab_size=len(SPECIAL_TOKENS) + 256 + 512,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    learner.train_from_iterator(texts, trainer)
    learned = json.loads(learner.to_str())["model"]
    vocab = dict(learned["vocab"])
    for index in range(N_ACTION_TOKENS):
        vocab[f"<action_{index}>"] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def load_tokenizer(config: LanguageModelConfig, saved_dir: str | None = None):
    """The checkpoint's saved tokenizer, else ``lm.tokenizer`` / ``lm.pretrained``'s, else the byte tokenizer."""
    source = saved_dir or config.tokenizer or config.pretrained
    if source is None:
        return default_tokenizer()
    from transformers import AutoTokenizer

    from embodied.encoders.hub import load_pretrained

    return load_pretrained(AutoTokenizer, source)


def text_vocab_size(tokenizer) -> int:
    """The vocabulary whose last 256 ids are actions: the tokenizer's base vocabulary (OpenVLA:
    ``tokenizer.vocab_size``, without added tokens such as Llama's pad)."""
    return int(tokenizer.vocab_size)


def build_language_model(config: LanguageModelConfig, tokenizer, saved_config: dict | None = None) -> nn.Module:
    """An ``AutoModelForCausalLM``: rebuilt from a checkpoint's saved config (weights follow), loaded from
    ``pretrained``, or built from ``model_type`` + ``model`` overrides (vocabulary sized to the tokenizer)."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    check_lm_config(config)
    if saved_config is not None:
        saved = dict(saved_config)
        lm_config = AutoConfig.for_model(saved.pop("model_type"), **saved)
        return AutoModelForCausalLM.from_config(lm_config, attn_implementation="sdpa")
    if config.pretrained:
        from embodied.encoders.hub import load_pretrained

        kwargs: dict[str, Any] = {}
        if config.dtype:
            kwargs["dtype"] = getattr(torch, config.dtype)
        if config.quantization:
            kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
                load_in_8bit=config.quantization == "8bit",
                load_in_4bit=config.quantization == "4bit",
                bnb_4bit_quant_type="nf4",  # QLoRA's 4-bit NormalFloat (OpenVLA's 4-bit too), not the fp4 default
                bnb_4bit_compute_dtype=torch.bfloat16,  # QLoRA's compute type
            )
            # bitsandbytes quantises while loading onto the device: this rank's GPU, else the CPU
            kwargs["device_map"] = {"": torch.cuda.current_device() if torch.cuda.is_available() else "cpu"}
        return load_pretrained(AutoModelForCausalLM, config.pretrained, **kwargs)
    overrides = {**(TINY_LLAMA if config.model_type == "llama" else {}), **dict(config.model)}
    overrides.setdefault("vocab_size", len(tokenizer))
    if overrides["vocab_size"] < len(tokenizer):
        raise ValueError(
            f"policy.lm.model.vocab_size ({overrides['vocab_size']}) is smaller than the tokenizer ({len(tokenizer)})"
        )
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        overrides.setdefault(name, getattr(tokenizer, name))
    lm_config = AutoConfig.for_model(config.model_type, **overrides)
    return AutoModelForCausalLM.from_config(lm_config, attn_implementation="sdpa")


def check_lm_config(config: LanguageModelConfig) -> None:
    """Clear errors for impossible requests, before anything is built or downloaded."""
    if config.train not in LM_TRAIN_MODES:
        raise ValueError(f"policy.lm.train must be one of {LM_TRAIN_MODES}, got {config.train!r}")
    if config.quantization not in QUANTIZATION:
        raise ValueError(f"policy.lm.quantization must be null, 8bit or 4bit, got {config.quantization!r}")
    if config.quantization:
        if not config.pretrained:
            raise ValueError("policy.lm.quantization needs policy.lm.pretrained: only loaded weights are quantised")
        if config.train == "full":
            raise ValueError("a quantised language model cannot be fully fine-tuned: use policy.lm.train=lora")
        try:
            import bitsandbytes
        except ImportError:
            raise ImportError("policy.lm.quantization needs bitsandbytes: pip install 'bitsandbytes>=0.46'") from None
        from packaging.version import Version

        if not torch.cuda.is_available() and Version(bitsandbytes.__version__) < Version("0.46"):
            raise RuntimeError(
                f"policy.lm.quantization={config.quantization} on the CPU needs bitsandbytes >= 0.46 (this is "
                f"{bitsandbytes.__version__}, CUDA only): pip install -U bitsandbytes, or drop the quantization "
                "(policy.lm.quantization=null)"
            )


def apply_lm_train_mode(lm: nn.Module, config: LanguageModelConfig) -> nn.Module:
    """``full``: every weight trains; ``frozen``: none; ``lora``: a peft ``PeftModel`` whose adapters (on every
    linear layer of the decoder blocks, as OpenVLA's ``target_modules="all-linear"``) are the only trainable
    weights."""
    if config.train == "full":
        return lm
    if config.train == "frozen":
        return lm.requires_grad_(False)
    from peft import LoraConfig, get_peft_model

    if config.quantization:
        from peft import prepare_model_for_kbit_training

        # non-reentrant checkpointing: the reentrant kind breaks DDP when it must also find unused parameters
        lm = prepare_model_for_kbit_training(lm, gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",  # every nn.Linear but the output head
    )
    return get_peft_model(lm, lora)


def base_model(lm: nn.Module) -> nn.Module:
    """The ``*ForCausalLM`` under a peft wrapper (or ``lm`` itself)."""
    return lm.get_base_model() if hasattr(lm, "get_base_model") else lm


def lm_config_dict(lm: nn.Module) -> dict:
    """The LM's transformers config as a dict with ``model_type``, to rebuild it offline from a checkpoint."""
    config = base_model(lm).config
    out = config.to_diff_dict()
    out["model_type"] = config.model_type
    out.pop("quantization_config", None)
    out.pop("_name_or_path", None)
    return out
