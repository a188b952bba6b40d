"""Chatbots 2.0 (`imbot.v2.*`) in the sandbox portal: methods, event shapes, the event queue."""
